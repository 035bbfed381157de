// Routers' logits: the memory-saving backward gives at::linear's gradients.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "adapters/routers/router_logits.h"

namespace remora {
namespace {

struct Result {
  at::Tensor logits, x_grad, weight_grad;
};

Result differentiate(bool eager, at::ScalarType x_dtype, bool x_needs_grad) {
  at::manual_seed(5);
  at::Tensor x = at::randn({37, 24}).to(x_dtype).requires_grad_(x_needs_grad);
  at::Tensor weight = (at::randn({6, 24}) * 0.3).requires_grad_(true);
  const at::Tensor upstream = at::randn({37, 6});
  at::Tensor logits = eager ? at::linear(x.to(at::kFloat), weight) : router_logits(x, weight);
  logits.backward(upstream);
  return {logits.detach(), x_needs_grad ? x.grad() : at::Tensor(), weight.grad()};
}

// The same GEMMs on the same operands as autograd through at::linear runs: the same bits.
TEST(RouterLogits, GradientsAreThoseOfAutogradThroughLinear) {
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    for (bool x_needs_grad : {true, false}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + (x_needs_grad ? ", x trains" : ", x detached"));
      const Result mine = differentiate(false, dtype, x_needs_grad), eager = differentiate(true, dtype, x_needs_grad);
      EXPECT_EQ(mine.logits.scalar_type(), at::kFloat);
      EXPECT_TRUE(at::equal(mine.logits, eager.logits));
      EXPECT_TRUE(at::equal(mine.weight_grad, eager.weight_grad));
      ASSERT_EQ(mine.x_grad.defined(), x_needs_grad);
      if (x_needs_grad) {
        EXPECT_EQ(mine.x_grad.scalar_type(), dtype);
        EXPECT_TRUE(at::equal(mine.x_grad, eager.x_grad));
      }
    }
  }
}

// An independent check of the formula: dW = dy^T x and dx = dy W, in fp64.
TEST(RouterLogits, GradientsFollowTheChainRule) {
  at::manual_seed(6);
  at::Tensor x = at::randn({9, 5}).requires_grad_(true);
  at::Tensor weight = at::randn({3, 5}).requires_grad_(true);
  const at::Tensor upstream = at::randn({9, 3});
  router_logits(x, weight).backward(upstream);
  const at::Tensor x64 = x.detach().to(at::kDouble), w64 = weight.detach().to(at::kDouble), dy = upstream.to(at::kDouble);
  EXPECT_TRUE(at::allclose(weight.grad().to(at::kDouble), dy.t().mm(x64), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(x.grad().to(at::kDouble), dy.mm(w64), 1e-5, 1e-5));
}

}  // namespace
}  // namespace remora
