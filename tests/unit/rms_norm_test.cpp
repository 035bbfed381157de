// RMSNorm: the bf16 row kernels against an fp64 reference and the eager formula; the hand-written backward
// against autograd through the eager formula.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/decode_linear.h"
#include "model/decoder.h"
#include "model/rms_norm_autograd.h"
#include "model/rms_norm_rows.h"

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

// x [rows..., size] bf16 with rows of very different scales, and a bf16 weight.
struct RowCase {
  at::Tensor x, weight;
};

RowCase row_case(at::IntArrayRef rows, int64_t size) {
  at::manual_seed(size);
  std::vector<int64_t> shape = rows.vec();
  shape.push_back(size);
  std::vector<int64_t> scale_shape = rows.vec();
  scale_shape.push_back(1);
  return {(at::randn(shape) * at::exp(at::randn(scale_shape) * 2)).to(at::kBFloat16),
          at::randn({size}).to(at::kBFloat16)};
}

// Widths around the 16 lanes and a model's; rows shaped as decode steps ([3, 1, D]) and as training
// batches ([2, 37, D], more rows than one parallel task takes at the small widths).
TEST(RmsNormRows, MatchesAnFp64ReferenceWithinTwoRoundings) {
  for (int64_t size : {1, 15, 16, 33, 768}) {
    for (const std::vector<int64_t>& rows : {std::vector<int64_t>{3, 1}, std::vector<int64_t>{2, 37}}) {
      SCOPED_TRACE("size " + std::to_string(size) + ", " + std::to_string(rows[1]) + " positions");
      const RowCase c = row_case(rows, size);
      const at::Tensor y = rms_norm_rows(c.x, c.weight, kEps);
      ASSERT_EQ(y.sizes(), c.x.sizes());
      ASSERT_EQ(y.scalar_type(), at::kBFloat16);
      const at::Tensor x64 = c.x.to(at::kDouble);
      const at::Tensor exact = c.weight.to(at::kDouble) * x64 / (x64.pow(2).mean(-1, true) + kEps).sqrt();
      // Two bf16 roundings (the normalised value, then the product with the weight): 2^-8 relative.
      const at::Tensor error = (y.to(at::kDouble) - exact).abs();
      EXPECT_TRUE((error <= exact.abs() * std::ldexp(1.0, -7) + 1e-30).all().item<bool>())
          << "worst error " << error.max().item<double>();
      // A row's bits do not depend on the rows beside it (decode steps of any batch size agree).
      const at::Tensor flat_x = c.x.reshape({-1, size}), flat_y = y.reshape({-1, size});
      for (int64_t row = 0; row < flat_x.size(0); row += 5) {
        EXPECT_TRUE(at::equal(rms_norm_rows(flat_x.narrow(0, row, 1), c.weight, kEps), flat_y.narrow(0, row, 1)));
      }
    }
  }
}

// The model's norm takes the rows kernel for decode steps only; prefill, scoring and training keep the
// eager formula's bits, which the recorded bf16 figures (demo, reproduction suite) were made with.
TEST(RmsNormRows, ServeDecodeStepsOnlyAndTheRestKeepsTheEagerBits) {
  RMSNorm norm(768, kEps, at::TensorOptions().dtype(at::kBFloat16));
  const RowCase step = row_case({3, 1}, 768), rows = row_case({4, 64}, 768);  // enough rows for sums to differ
  norm.weight.copy_(step.weight);
  at::NoGradGuard no_grad;
  if (decode_isa() != DecodeIsa::kNone) {
    EXPECT_TRUE(at::equal(norm.forward(step.x), rms_norm_rows(step.x, step.weight, kEps)));
  }
  EXPECT_TRUE(at::equal(norm.forward(rows.x), eager_rms_norm(rows.x, step.weight)));
}

TEST(RmsNormRows, ApplyToBf16RowsOnTheCpuWithAWeightOfTheirWidth) {
  const RowCase c = row_case({2, 3}, 8);
  EXPECT_TRUE(rms_norm_rows_apply(c.x, c.weight));
  const at::Tensor strided = c.x.transpose(0, 1);  // copied to rows first
  ASSERT_FALSE(strided.is_contiguous());
  EXPECT_TRUE(at::equal(rms_norm_rows(strided, c.weight, kEps), rms_norm_rows(c.x, c.weight, kEps).transpose(0, 1)));
  EXPECT_FALSE(rms_norm_rows_apply(c.x.to(at::kFloat), c.weight.to(at::kFloat)));
  EXPECT_FALSE(rms_norm_rows_apply(c.x, c.weight.to(at::kFloat)));
  EXPECT_FALSE(rms_norm_rows_apply(c.x, at::ones({9}, at::kBFloat16)));
  EXPECT_THROW(rms_norm_rows(c.x, at::ones({9}, at::kBFloat16), kEps), c10::Error);
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
