// Query-blocked attention against full attention through autograd: outputs and q/k/v gradients,
// with grouped KV heads, padding, a sliding window and blocks that do not divide the length.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/blocked_attention.h"

namespace remora {
namespace {

constexpr int64_t kBatch = 2, kHeads = 4, kKvHeads = 2;

struct Case {
  at::Tensor q, k, v, bias, real;  // real [B, T]: which positions are tokens (not padding)
  int64_t tokens, head_dim;
};

// Row 0 has no padding, row 1 three left-padding positions. The bias is built here from the
// definition (a key is visible if it is a token, not in the future, and within the window).
Case random_case(at::ScalarType dtype, int64_t window, int64_t tokens = 13, int64_t head_dim = 8) {
  at::manual_seed(11);
  Case c;
  c.tokens = tokens;
  c.head_dim = head_dim;
  c.q = at::randn({kBatch, kHeads, tokens, head_dim}).to(dtype).requires_grad_(true);
  c.k = at::randn({kBatch, kKvHeads, tokens, head_dim}).to(dtype).requires_grad_(true);
  c.v = at::randn({kBatch, kKvHeads, tokens, head_dim}).to(dtype).requires_grad_(true);
  c.real = at::ones({kBatch, tokens}, at::kBool);
  c.real[1].narrow(0, 0, 3).fill_(false);
  c.bias = at::zeros({kBatch, 1, 1, tokens, tokens}, dtype);
  for (int64_t b = 0; b < kBatch; ++b) {
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t s = 0; s < tokens; ++s) {
        const bool visible = s <= t && (window == 0 || t - s < window) && c.real[b][s].item<bool>();
        if (!visible) c.bias[b][0][0][t][s] = -1e30;
      }
    }
  }
  return c;
}

// Full attention as transformers' eager path computes it, KV heads repeated for their query heads.
at::Tensor full_attention(const Case& c) {
  const int64_t G = kHeads / kKvHeads;
  at::Tensor k = c.k.repeat_interleave(G, 1), v = c.v.repeat_interleave(G, 1);
  at::Tensor scores = at::matmul(c.q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(c.head_dim)) +
                      c.bias.squeeze(1).to(c.q.scalar_type());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(v.scalar_type());
  return at::matmul(probs, v).transpose(1, 2).reshape({kBatch, c.tokens, kHeads * c.head_dim});
}

struct Result {
  at::Tensor out, d_q, d_k, d_v;
};

// Output and gradients of sum(out * weights) over real query positions only: a padding query sees
// no key, and what it averages is unused by definition.
template <typename Attend>
Result run(const Case& c, Attend attend) {
  for (const at::Tensor& t : {c.q, c.k, c.v}) t.mutable_grad() = at::Tensor();
  at::Tensor out = attend(c);
  at::manual_seed(5);
  at::Tensor weights = at::randn(out.sizes()) * c.real.unsqueeze(-1);
  (out.to(at::kFloat) * weights).sum().backward();
  return {(out.to(at::kFloat) * c.real.unsqueeze(-1)).detach(), c.q.grad().to(at::kFloat), c.k.grad().to(at::kFloat),
          c.v.grad().to(at::kFloat)};
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double tolerance, const char* what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_LT((a - b).abs().max().item<double>(), tolerance) << what;
}

void check_against_full_attention(at::ScalarType dtype, int64_t window, int64_t block, double tolerance,
                                  int64_t tokens = 13, int64_t head_dim = 8) {
  const Case c = random_case(dtype, window, tokens, head_dim);
  const Result full = run(c, full_attention);
  const Result blocked = run(c, [&](const Case& x) { return blocked_causal_attention(x.q, x.k, x.v, x.bias, window, block); });
  expect_close(blocked.out, full.out, tolerance, "output");
  expect_close(blocked.d_q, full.d_q, tolerance, "d q");
  expect_close(blocked.d_k, full.d_k, tolerance, "d k");
  expect_close(blocked.d_v, full.d_v, tolerance, "d v");
  // The comparison means something: the gradients are not all zero.
  EXPECT_GT(full.d_k.abs().max().item<double>(), 0.1);
}

TEST(BlockedAttention, MatchesFullAttentionInFloat32) {
  for (int64_t block : {1, 4, 5, 13, 64}) {
    SCOPED_TRACE(block);
    check_against_full_attention(at::kFloat, 0, block, 1e-5);
  }
}

TEST(BlockedAttention, MatchesFullAttentionWithASlidingWindow) {
  for (int64_t block : {3, 4, 13}) {
    SCOPED_TRACE(block);
    check_against_full_attention(at::kFloat, 5, block, 1e-5);
  }
}

// bf16 takes the fused softmax kernels: short rows (13 keys at most) and rows of up to 70 keys,
// past the kernels' 16-wide lanes, with and without a window.
TEST(BlockedAttention, StaysCloseToFullAttentionInBfloat16) {
  check_against_full_attention(at::kBFloat16, 0, 4, 0.05);
  for (int64_t window : {0, 23}) {
    SCOPED_TRACE(window);
    check_against_full_attention(at::kBFloat16, window, 16, 0.05, 70, 16);
  }
}

TEST(BlockedAttention, GradientsOnlyForInputsThatNeedThem) {
  Case c = random_case(at::kFloat, 0);
  at::Tensor q = c.q.detach();
  blocked_causal_attention(q, c.k, c.v, c.bias, 0, 4).sum().backward();
  EXPECT_FALSE(q.grad().defined());
  EXPECT_TRUE(c.k.grad().defined());
}

TEST(BlockedAttention, RefusesMismatchedShapes) {
  Case c = random_case(at::kFloat, 0);
  EXPECT_THROW(blocked_causal_attention(c.q, c.k, c.v.narrow(2, 0, 5), c.bias, 0, 4), std::exception);
  EXPECT_THROW(blocked_causal_attention(c.q, c.k, c.v, c.bias, 0, 0), std::exception);
}

}  // namespace
}  // namespace remora
