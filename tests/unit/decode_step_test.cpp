// The kernels of one-position decode steps: the projection in every instruction-set version this CPU
// runs and the attention over the cache, against fp64 references; RoPE's one-step form
// against the eager formula bit for bit; a row's bits independent
// of the rows beside it; which steps use them; and the weights' huge-page placement.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "model/decode_attention.h"
#include "model/decode_linear.h"
#include "model/rope.h"
#include "model/weight_pages.h"

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
  // Widths that end inside a vector of 8, 16 or 32 lanes; rows that end inside a tile of 8 or 16.
  for (DecodeIsa isa : versions_here()) {
    for (int64_t in : {1, 7, 16, 33, 512}) {
      for (int64_t out : {1, 5, 13, 64}) {
        for (int64_t rows : {1, 3, 8, 17}) {
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
    Case c = random_case(19, 37, 11, true);  // rows past one tile of 16
    at::Tensor together = decode_linear(c.x, c.weight, c.bias, isa);
    for (int64_t row = 0; row < 19; ++row) {
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

// q [B, H, 1, Dh] (a transposed view, as the decoder passes it), keys and values [B, Hkv, S, Dh] as
// views of a longer cache, bias [B, 1, 1, 1, S] hiding some positions.
struct AttentionCase {
  at::Tensor q, keys, values, bias;
};

AttentionCase attention_case(int64_t B, int64_t H, int64_t Hkv, int64_t S, int64_t Dh, uint64_t seed) {
  at::manual_seed(seed);
  AttentionCase c;
  c.q = (at::randn({B, 1, H, Dh}) * 2).to(at::kBFloat16).transpose(1, 2);
  c.keys = at::randn({B, Hkv, S + 5, Dh}).to(at::kBFloat16).narrow(2, 0, S);
  c.values = at::randn({B, Hkv, S + 5, Dh}).to(at::kBFloat16).narrow(2, 0, S);
  at::Tensor hidden = at::rand({B, 1, 1, 1, S}) < 0.3;
  hidden.select(-1, S - 1).fill_(false);  // the step's own position is always visible
  c.bias = at::zeros({B, 1, 1, 1, S}).masked_fill_(hidden, -1e30).to(at::kBFloat16);
  return c;
}

TEST(DecodeAttention, MatchesAnFp64ReferenceWithGroupedHeadsAndAMask) {
  for (int64_t Dh : {64, 20}) {  // 20: not a whole number of the kernel's 16 lanes
    AttentionCase c = attention_case(3, 8, 2, 37, Dh, Dh);
    const double scale = 1.0 / std::sqrt(double(Dh));
    at::Tensor y = decode_attention(c.q, c.keys, c.values, c.bias, {}, scale);
    ASSERT_EQ(y.sizes(), at::IntArrayRef({3, 1, 8 * Dh}));
    // The same attention in fp64 with the KV heads repeated for their 4 query heads each.
    at::Tensor k64 = c.keys.to(at::kDouble).repeat_interleave(4, 1);
    at::Tensor v64 = c.values.to(at::kDouble).repeat_interleave(4, 1);
    at::Tensor scores =
        at::matmul(c.q.to(at::kDouble), k64.transpose(-1, -2)) * scale + c.bias.to(at::kDouble).squeeze(1);
    at::Tensor probs = at::softmax(scores, -1);
    at::Tensor exact = at::matmul(probs, v64).transpose(1, 2).reshape({3, 1, 8 * Dh});
    at::Tensor magnitude = at::matmul(probs, v64.abs()).transpose(1, 2).reshape({3, 1, 8 * Dh});
    // One bf16 rounding (2^-9 relative) plus fp32 error in the scores, exponentials and sums.
    at::Tensor allowed = exact.abs() * std::ldexp(1.0, -8) + magnitude * 1e-4 + 1e-30;
    at::Tensor error = (y.to(at::kDouble) - exact).abs();
    EXPECT_TRUE((error <= allowed).all().item<bool>())
        << "Dh " << Dh << ": worst excess " << (error - allowed).max().item<double>();
  }
}

TEST(DecodeAttention, RowsReadOnlyTheirOwnPositionsAndNeverDependOnTheRowsBesideThem) {
  AttentionCase c = attention_case(4, 4, 4, 23, 64, 7);
  const std::vector<int64_t> starts = {0, 5, 22, 9};  // row 2 sees only its own new position
  at::Tensor shown = c.bias.clone();
  // The columns before a row's start are its padding.
  for (int64_t b = 0; b < 4; ++b) shown[b].narrow(-1, 0, starts[b]).fill_(-1e30);
  at::Tensor together = decode_attention(c.q, c.keys, c.values, shown, starts, 0.125);
  // Hidden positions weigh exactly zero, so skipping them changes no bit.
  EXPECT_TRUE(at::equal(together, decode_attention(c.q, c.keys, c.values, shown, {}, 0.125)));
  for (int64_t b = 0; b < 4; ++b) {
    auto row = [&](const at::Tensor& t) { return t.narrow(0, b, 1); };
    at::Tensor alone = decode_attention(row(c.q), row(c.keys), row(c.values), row(shown), {starts[b]}, 0.125);
    EXPECT_TRUE(at::equal(alone, row(together))) << "row " << b;
  }
  // Row 2 attends to its last position alone: its output is that position's values, per head.
  EXPECT_TRUE(at::equal(together[2][0], c.values[2].select(1, 22).reshape({-1})));
}

TEST(DecodeAttention, AppliesOnlyToOnePositionBf16StepsWithoutGradient) {
  AttentionCase c = attention_case(1, 2, 2, 4, 8, 1);
  EXPECT_TRUE(decode_attention_applies(c.q, c.keys));
  EXPECT_FALSE(decode_attention_applies(at::cat({c.q, c.q}, 2), c.keys));  // two positions: prefill
  EXPECT_FALSE(decode_attention_applies(c.q.to(at::kFloat), c.keys.to(at::kFloat)));
  EXPECT_FALSE(decode_attention_applies(c.q.clone().requires_grad_(true), c.keys));
}

TEST(DecodeRope, OneBf16StepHasTheEagerFormulasBits) {
  at::manual_seed(3);
  for (int64_t Dh : {64, 6}) {
    // q as the decoder passes it: [B, 1, H, Dh] viewed as [B, H, 1, Dh]; tables [B, 1, Dh] in bf16.
    at::Tensor x = (at::randn({3, 1, 5, Dh}) * 4).to(at::kBFloat16).transpose(1, 2);
    at::Tensor cos = at::randn({3, 1, Dh}).to(at::kBFloat16), sin = at::randn({3, 1, Dh}).to(at::kBFloat16);
    at::Tensor rotated = at::cat({-x.narrow(-1, Dh / 2, Dh / 2), x.narrow(-1, 0, Dh / 2)}, -1);
    at::Tensor eager = x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);  // transformers' apply_rotary_pos_emb
    at::Tensor step = apply_rope(x, cos, sin);
    ASSERT_EQ(step.sizes(), eager.sizes());
    EXPECT_TRUE(at::equal(step, eager)) << "Dh " << Dh << ": worst difference "
                                        << (step.to(at::kFloat) - eager.to(at::kFloat)).abs().max().item<float>();
  }
}

TEST(WeightPages, TensorsMoveIntoOneBufferStartingOnAHugePageAndStayIndependent) {
  std::vector<at::Tensor> tensors = {at::empty({300, 7}, at::kBFloat16), at::empty({5}, at::kBFloat16),
                                     at::empty({3, 3}, at::kFloat), at::empty({1024, 1024}, at::kBFloat16)};
  const void* other_dtype = tensors[2].data_ptr();
  place_in_huge_pages(tensors);
  EXPECT_EQ(tensors[2].data_ptr(), other_dtype);  // left where it was
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tensors[0].data_ptr()) % (uintptr_t{2} << 20), 0u);
  for (size_t i : {0, 1, 3}) {
    EXPECT_TRUE(tensors[i].is_contiguous());
    EXPECT_TRUE(tensors[i].storage().is_alias_of(tensors[0].storage()));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(tensors[i].data_ptr()) % 64, 0u) << "tensor " << i;
  }
  EXPECT_EQ(tensors[0].sizes(), at::IntArrayRef({300, 7}));
  EXPECT_EQ(tensors[3].sizes(), at::IntArrayRef({1024, 1024}));
  for (size_t i : {0, 1, 3}) tensors[i].fill_(static_cast<double>(i + 1));
  for (size_t i : {0, 1, 3}) {
    EXPECT_TRUE((tensors[i] == static_cast<double>(i + 1)).all().item<bool>()) << "tensor " << i;
  }
}

}  // namespace
}  // namespace remora
