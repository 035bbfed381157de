// FactorCast: one cast per change of a factor, and gradients still reach the fp32 master.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "adapters/factor_cast.h"

namespace remora {
namespace {

TEST(FactorCast, ReturnsTheSameCastUntilTheFactorChanges) {
  FactorCast cast;
  at::Tensor factor = at::randn({4, 3}).requires_grad_(true);
  const at::Tensor first = cast.get(factor, at::kBFloat16);
  EXPECT_EQ(first.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(first, factor.detach().to(at::kBFloat16)));
  EXPECT_TRUE(cast.get(factor, at::kBFloat16).is_same(first));
  {
    at::NoGradGuard no_grad;  // as the optimizer updates it
    factor.add_(1.0);
  }
  const at::Tensor second = cast.get(factor, at::kBFloat16);
  EXPECT_FALSE(second.is_same(first));
  EXPECT_TRUE(at::equal(second, factor.detach().to(at::kBFloat16)));
  // Another dtype, or a factor already in the activations' dtype (returned as it is).
  EXPECT_EQ(cast.get(factor, at::kHalf).scalar_type(), at::kHalf);
  EXPECT_TRUE(cast.get(factor, at::kFloat).is_same(factor));
}

TEST(FactorCast, NoticesNewStorageAndAnotherFactor) {
  FactorCast cast;
  at::Tensor factor = at::randn({4, 3});
  const at::Tensor first = cast.get(factor, at::kBFloat16);
  factor.set_data(at::randn({4, 3}));  // same tensor, new storage, same version
  EXPECT_TRUE(at::equal(cast.get(factor, at::kBFloat16), factor.to(at::kBFloat16)));
  at::Tensor other = at::randn({2, 2});
  EXPECT_TRUE(at::equal(cast.get(other, at::kBFloat16), other.to(at::kBFloat16)));
}

// Two micro-batches' forwards and backwards through one kept cast accumulate both gradients.
TEST(FactorCast, GradientsReachTheMasterThroughAKeptCast) {
  torch::manual_seed(7);
  FactorCast cast;
  at::Tensor factor = at::randn({3, 5}).requires_grad_(true);
  // The reference: plain autograd through a fresh cast each time.
  at::Tensor reference = factor.detach().clone().requires_grad_(true);
  const at::Tensor x1 = at::randn({2, 5}).to(at::kBFloat16), x2 = at::randn({4, 5}).to(at::kBFloat16);
  at::linear(x1, cast.get(factor, at::kBFloat16)).sum().backward();
  at::linear(x1, reference.to(at::kBFloat16)).sum().backward();
  EXPECT_TRUE(at::equal(factor.grad(), reference.grad()));
  at::linear(x2, cast.get(factor, at::kBFloat16)).sum().backward();
  at::linear(x2, reference.to(at::kBFloat16)).sum().backward();
  EXPECT_TRUE(at::equal(factor.grad(), reference.grad()));
  // And what that is: d/dW sum(x W^T) = column sums of x in every row of W, summed over both
  // backwards (each rounded to bf16 on the way, a few bf16 ulps of the sums).
  const at::Tensor expected = (x1.to(at::kFloat).sum(0) + x2.to(at::kFloat).sum(0)).expand({3, 5});
  EXPECT_TRUE(at::allclose(factor.grad(), expected, 2e-2, 5e-2)) << factor.grad() << expected;
}

// A cast made without autograd (generation) is not reused where gradients are needed, and back.
TEST(FactorCast, CastsWithoutAutogradAreNotReusedForTraining) {
  FactorCast cast;
  at::Tensor factor = at::randn({3, 5}).requires_grad_(true);
  {
    at::NoGradGuard no_grad;
    EXPECT_FALSE(cast.get(factor, at::kBFloat16).requires_grad());
  }
  const at::Tensor recorded = cast.get(factor, at::kBFloat16);
  EXPECT_TRUE(recorded.requires_grad());
  at::NoGradGuard no_grad;
  EXPECT_FALSE(cast.get(factor, at::kBFloat16).requires_grad());
}

}  // namespace
}  // namespace remora
