// The kernels of one-position decode steps: the projection in every instruction-set version this CPU
// runs and the RMSNorm, against fp64 references; a row's bits independent of the rows beside it; and
// which steps use them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "model/decode_linear.h"
#include "model/decode_rms_norm.h"

namespace remora {
namespace {

std::vector<DecodeIsa> versions_here() {
  std::vector<DecodeIsa> isas;
  if (decode_isa() >= DecodeIsa::kAvx2) isas.push_back(DecodeIsa::kAvx2);
  if (decode_isa() >= DecodeIsa::kAvx512) isas.push_back(DecodeIsa::kAvx512);
  if (decode_isa() >= DecodeIsa::kAvx512Bf16) isas.push_back(DecodeIsa::kAvx512Bf16);
  return isas;
}

// x [rows, 1, in] W [out, in] b [out], all bf16.
struct Case {
  at::Tensor x, weight, bias;
};

Case random_case(int64_t rows, int64_t in, int64_t out, bool with_bias) {
  at::manual_seed(rows * 1000 + in * 10 + out);
  return {at::randn({rows, 1, in}).to(at::kBFloat16), at::randn({out, in}).to(at::kBFloat16),
          with_bias ? at::randn({out}).to(at::kBFloat16) : at::Tensor()};
}

TEST(DecodeLinear, MatchesAnFp64ReferenceForEveryShapeAndVersion) {
  if (versions_here().empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  // Widths that end inside a vector of 8 or 16 lanes, outputs that end inside a tile of 4, rows that
  // end inside a tile of 2 or 4.
  for (DecodeIsa isa : versions_here()) {
    for (int64_t in : {1, 7, 16, 33, 512}) {
      for (int64_t out : {1, 5, 13, 64}) {
        for (int64_t rows : {1, 3, 8}) {
          for (bool with_bias : {false, true}) {
            Case c = random_case(rows, in, out, with_bias);
            at::Tensor y = decode_linear(c.x, c.weight, c.bias, isa);
            ASSERT_EQ(y.sizes(), at::IntArrayRef({rows, 1, out}));
            ASSERT_EQ(y.scalar_type(), at::kBFloat16);
            at::Tensor x64 = c.x.to(at::kDouble), w64 = c.weight.to(at::kDouble);
            at::Tensor exact = at::matmul(x64, w64.t());
            if (with_bias) exact = exact + c.bias.to(at::kDouble);
            // One bf16 rounding (half an ulp, 2^-9 relative) plus fp32 summation error.
            at::Tensor magnitude = at::matmul(x64.abs(), w64.abs().t());
            at::Tensor allowed = exact.abs() * std::ldexp(1.0, -8) + magnitude * 1e-5 + 1e-30;
            at::Tensor error = (y.to(at::kDouble) - exact).abs();
            EXPECT_TRUE((error <= allowed).all().item<bool>())
                << "isa " << static_cast<int>(isa) << " in " << in << " out " << out << " rows " << rows
                << " bias " << with_bias << ": worst excess " << (error - allowed).max().item<double>();
          }
        }
      }
    }
  }
}

TEST(DecodeLinear, EachRowsBitsDoNotDependOnTheRowsBesideIt) {
  if (versions_here().empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  for (DecodeIsa isa : versions_here()) {
    Case c = random_case(7, 37, 11, true);
    at::Tensor together = decode_linear(c.x, c.weight, c.bias, isa);
    for (int64_t row = 0; row < 7; ++row) {
      at::Tensor alone = decode_linear(c.x.narrow(0, row, 1), c.weight, c.bias, isa);
      EXPECT_TRUE(at::equal(together.narrow(0, row, 1), alone)) << "isa " << static_cast<int>(isa) << " row " << row;
    }
  }
}

TEST(DecodeLinear, AppliesOnlyToOnePositionBf16StepsWithoutGradient) {
  Case c = random_case(2, 16, 4, false);
  const bool here = decode_isa() != DecodeIsa::kNone;
  EXPECT_EQ(decode_linear_applies(c.x, c.weight), here);
  EXPECT_FALSE(decode_linear_applies(at::cat({c.x, c.x}, 1), c.weight));  // two positions: prefill
  EXPECT_FALSE(decode_linear_applies(c.x.to(at::kFloat), c.weight.to(at::kFloat)));
  EXPECT_FALSE(decode_linear_applies(c.x, c.weight.t().contiguous().t()));  // strided weight
  at::Tensor needs_grad = c.x.clone().requires_grad_(true);
  EXPECT_FALSE(decode_linear_applies(needs_grad, c.weight));
  {
    at::NoGradGuard no_grad;
    EXPECT_EQ(decode_linear_applies(needs_grad, c.weight), here);
  }
}

TEST(DecodeRmsNorm, MatchesAnFp64ReferenceWithinTwoRoundings) {
  for (int64_t size : {1, 15, 16, 33, 768}) {
    at::manual_seed(size);
    at::Tensor x = (at::randn({3, 1, size}) * 3).to(at::kBFloat16);
    at::Tensor weight = at::randn({size}).to(at::kBFloat16);
    at::Tensor y = decode_rms_norm(x, weight, 1e-5);
    ASSERT_EQ(y.sizes(), x.sizes());
    at::Tensor x64 = x.to(at::kDouble);
    at::Tensor exact = weight.to(at::kDouble) * x64 / (x64.pow(2).mean(-1, true) + 1e-5).sqrt();
    // Two bf16 roundings (the normalised value, then the product with the weight): 2^-8 relative.
    at::Tensor error = (y.to(at::kDouble) - exact).abs();
    EXPECT_TRUE((error <= exact.abs() * std::ldexp(1.0, -7) + 1e-30).all().item<bool>())
        << "size " << size << ": worst error " << error.max().item<double>();
    for (int64_t row = 0; row < 3; ++row) {
      EXPECT_TRUE(at::equal(decode_rms_norm(x.narrow(0, row, 1), weight, 1e-5), y.narrow(0, row, 1)));
    }
  }
}

TEST(DecodeRmsNorm, AppliesToTheStepsTheProjectionKernelServes) {
  at::Tensor x = at::randn({2, 1, 8}).to(at::kBFloat16), weight = at::ones({8}, at::kBFloat16);
  EXPECT_EQ(decode_rms_norm_applies(x, weight), decode_isa() != DecodeIsa::kNone);
  EXPECT_FALSE(decode_rms_norm_applies(at::cat({x, x}, 1), weight));
  EXPECT_FALSE(decode_rms_norm_applies(x.to(at::kFloat), weight.to(at::kFloat)));
}

}  // namespace
}  // namespace remora
