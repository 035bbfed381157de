// RMSNorm's hand-written backward against autograd through the eager formula.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/rms_norm_autograd.h"

namespace remora {
namespace {

constexpr double kEps = 1e-5;

// transformers' LlamaRMSNorm, differentiated by autograd.
at::Tensor eager_rms_norm(const at::Tensor& x, const at::Tensor& weight) {
  at::Tensor x32 = x.to(at::kFloat);
  return weight * (x32 * at::rsqrt(x32.pow(2).mean(-1, true) + kEps)).to(x.scalar_type());
}

struct Gradients {
  at::Tensor y, x, weight;
};

template <typename Norm>
Gradients run(Norm norm, const at::Tensor& x_value, const at::Tensor& weight_value, const at::Tensor& upstream,
              bool weight_trains) {
  at::Tensor x = x_value.clone().requires_grad_(true);
  at::Tensor weight = weight_value.clone().requires_grad_(weight_trains);
  at::Tensor y = norm(x, weight);
  y.backward(upstream.to(y.scalar_type()));
  return {y.detach(), x.grad(), weight_trains ? weight.grad() : at::Tensor()};
}

double max_difference(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  EXPECT_EQ(a.scalar_type(), b.scalar_type());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

struct Inputs {
  at::Tensor x, weight, upstream;
};

// Rows of different scales (the backward's correction term matters when a row is far from unit RMS).
Inputs inputs(at::ScalarType dtype, int64_t width = 48) {
  at::manual_seed(11);
  at::Tensor scale = at::exp(at::randn({3, 5, 1}) * 2);
  return {(at::randn({3, 5, width}) * scale).to(dtype), (1 + 0.3 * at::randn({width})).to(dtype),
          at::randn({3, 5, width})};
}

TEST(RmsNormBackward, MatchesAutogradThroughTheEagerFormulaInFloat32) {
  const Inputs in = inputs(at::kFloat);
  for (bool weight_trains : {true, false}) {
    const Gradients mine = run(
        [](const at::Tensor& x, const at::Tensor& w) { return rms_norm_with_backward(x, w, kEps); }, in.x, in.weight,
        in.upstream, weight_trains);
    const Gradients eager = run(eager_rms_norm, in.x, in.weight, in.upstream, weight_trains);
    // A fp64 reference of the same formula: both fp32 results sit within rounding of it.
    const Gradients exact = run(eager_rms_norm, in.x.to(at::kDouble), in.weight.to(at::kDouble),
                                in.upstream.to(at::kDouble), weight_trains);
    EXPECT_EQ(max_difference(mine.y, eager.y), 0.0);  // the forward is the eager formula itself
    const double x_scale = exact.x.abs().max().item<double>();
    EXPECT_LT(max_difference(mine.x, exact.x.to(at::kFloat)), 1e-5 * x_scale);
    EXPECT_LT(max_difference(mine.x, eager.x), 1e-5 * x_scale);
    if (weight_trains) {
      EXPECT_LT(max_difference(mine.weight, exact.weight.to(at::kFloat)), 1e-5 * exact.weight.abs().max().item<double>());
    } else {
      EXPECT_FALSE(mine.weight.defined());
    }
  }
}

// bf16 rows take the fused backward: widths on and off its 16-wide lanes, the weight training or not.
TEST(RmsNormBackward, MatchesAutogradThroughTheEagerFormulaInBfloat16) {
  for (int64_t width : {48, 53}) {
    for (bool weight_trains : {true, false}) {
      SCOPED_TRACE(std::to_string(width) + (weight_trains ? " weight trains" : ""));
      const Inputs in = inputs(at::kBFloat16, width);
      const Gradients mine = run(
          [](const at::Tensor& x, const at::Tensor& w) { return rms_norm_with_backward(x, w, kEps); }, in.x,
          in.weight, in.upstream, weight_trains);
      const Gradients eager = run(eager_rms_norm, in.x, in.weight, in.upstream, weight_trains);
      EXPECT_EQ(max_difference(mine.y, eager.y), 0.0);
      // The same steps in the same dtypes: at most a bf16 rounding apart where fp32 sums differ in order.
      const at::Tensor x_error = (mine.x.to(at::kFloat) - eager.x.to(at::kFloat)).abs();
      EXPECT_TRUE(at::all(x_error <= eager.x.to(at::kFloat).abs() * (1.0 / 128) + 1e-6).item<bool>());
      if (weight_trains) {
        EXPECT_LT(max_difference(mine.weight, eager.weight), 0.02 * eager.weight.abs().max().item<double>());
      } else {
        EXPECT_FALSE(mine.weight.defined());
      }
    }
  }
}

// Mixed dtypes as full fine-tuning of a bf16 checkpoint can meet them: an fp32 weight on bf16 rows.
TEST(RmsNormBackward, MixedDtypesGetTheGradientsAutogradGives) {
  const Inputs in = inputs(at::kBFloat16);
  const at::Tensor weight = in.weight.to(at::kFloat);
  const Gradients mine = run(
      [](const at::Tensor& x, const at::Tensor& w) { return rms_norm_with_backward(x, w, kEps); }, in.x, weight,
      in.upstream, true);
  const Gradients eager = run(eager_rms_norm, in.x, weight, in.upstream, true);
  EXPECT_EQ(mine.y.scalar_type(), at::kFloat);
  EXPECT_EQ(max_difference(mine.y, eager.y), 0.0);
  EXPECT_LT(max_difference(mine.x, eager.x), 0.01 * eager.x.abs().max().item<double>());
  EXPECT_LT(max_difference(mine.weight, eager.weight), 1e-4 * eager.weight.abs().max().item<double>());
}

}  // namespace
}  // namespace remora
