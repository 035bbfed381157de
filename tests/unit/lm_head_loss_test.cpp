// The chunked LM-head cross-entropy against full logits through autograd, across chunk boundaries.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/lm_head_loss.h"

namespace remora {
namespace {

// A vocabulary large enough that N rows span several chunks (the last one partial).
constexpr int64_t kVocab = 20000, kRows = 600, kHidden = 16;

struct Case {
  at::Tensor hidden, head, targets, weights;
};

Case random_case(at::ScalarType dtype, bool head_trains) {
  at::manual_seed(3);
  Case c;
  c.hidden = (at::randn({kRows, kHidden}) * 2).to(dtype).requires_grad_(true);
  c.head = at::randn({kVocab, kHidden}).to(dtype).requires_grad_(head_trains);
  c.targets = at::randint(kVocab, {kRows}, at::kLong);
  c.weights = at::rand({kRows});  // how the objective weights each token's loss
  return c;
}

// What the loss was before chunking: full fp32 logits, log_softmax, gather, through autograd.
at::Tensor full_logits_loss(const Case& c) {
  at::Tensor logits = at::linear(c.hidden, c.head).to(at::kFloat);
  return at::cross_entropy_loss(logits, c.targets, {}, at::Reduction::None);
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double tolerance) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LT((a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>(), tolerance);
}

TEST(LmHeadLoss, SpansSeveralChunks) { EXPECT_LT(lm_head_chunk_rows(kVocab) * 2, kRows); }

void check_against_full_logits(at::ScalarType dtype, bool head_trains, double tolerance) {
  Case chunked = random_case(dtype, head_trains), full = random_case(dtype, head_trains);
  at::Tensor loss = token_cross_entropy(chunked.hidden, chunked.head, chunked.targets);
  at::Tensor expected = full_logits_loss(full);
  // Relative to the losses' size (tens here): the chunks' GEMMs and the full one may sum their terms in
  // different orders (OpenBLAS picks kernels by shape and CPU), a few ulps of each logit.
  const double loss_scale = expected.abs().max().item<double>();
  expect_close(loss / loss_scale, expected / loss_scale, 1e-6);
  (loss * chunked.weights).sum().backward();
  (expected * full.weights).sum().backward();
  // The gradient of hidden is (softmax - onehot) head scaled per row: relative to its size.
  const double scale = full.hidden.grad().abs().max().item<double>();
  expect_close(chunked.hidden.grad() / scale, full.hidden.grad() / scale, tolerance);
  if (head_trains) {
    const double head_scale = full.head.grad().abs().max().item<double>();
    expect_close(chunked.head.grad() / head_scale, full.head.grad() / head_scale, tolerance);
  } else {
    EXPECT_FALSE(chunked.head.grad().defined());
  }
}

TEST(LmHeadLoss, FrozenHeadFp32MatchesFullLogits) { check_against_full_logits(at::kFloat, false, 1e-5); }
TEST(LmHeadLoss, TrainedHeadFp32MatchesFullLogits) { check_against_full_logits(at::kFloat, true, 1e-5); }
// bf16: the gradient is rounded to bf16 at a different point (before or after the per-row scale).
TEST(LmHeadLoss, FrozenHeadBf16MatchesFullLogits) { check_against_full_logits(at::kBFloat16, false, 2e-2); }
TEST(LmHeadLoss, TrainedHeadBf16MatchesFullLogits) { check_against_full_logits(at::kBFloat16, true, 2e-2); }

// bf16 logits go through one fused pass per row. With an identity head the logits are the hidden
// rows themselves and the hidden rows' gradient is the logits' gradient, so both can be checked
// against the eager ops, fp32 softmax of the bf16 logits and the gradient rounded to bf16 once:
// bf16((softmax - onehot) w) with a trained head (the weight w applied in the pass), bf16(softmax -
// onehot) w with a frozen one. 53 columns: the pass's 16-wide body and its tail.
void check_fused_bf16_rows(bool head_trains) {
  constexpr int64_t kRowsHere = 70, kWidth = 53;
  at::manual_seed(5);
  at::Tensor logits = (at::randn({kRowsHere, kWidth}) * 4).to(at::kBFloat16);
  logits[3][7] = 40;  // a row whose softmax is one-hot in fp32
  at::Tensor hidden = logits.clone().requires_grad_(true);
  at::Tensor head = at::eye(kWidth).to(at::kBFloat16).requires_grad_(head_trains);
  at::Tensor targets = at::randint(kWidth, {kRowsHere}, at::kLong);
  targets[3] = 7;
  at::Tensor weights = at::rand({kRowsHere}) + 0.5;
  at::Tensor loss = token_cross_entropy(hidden, head, targets);
  (loss * weights).sum().backward();

  const at::Tensor log_probs = logits.to(at::kFloat).log_softmax(-1);
  const at::Tensor expected_loss = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1);
  EXPECT_LT((loss - expected_loss).abs().max().item<double>(), 2e-6);
  const at::Tensor step = log_probs.exp() - at::one_hot(targets, kWidth).to(at::kFloat);
  const at::Tensor expected_grad = head_trains ? (step * weights.unsqueeze(1)).to(at::kBFloat16)
                                               : (step.to(at::kBFloat16).to(at::kFloat) * weights.unsqueeze(1)).to(at::kBFloat16);
  // The pass's exp is within 2 ulp of fp32 and it sums in another order: a value may land on the
  // other side of a bf16 rounding boundary, one step away, and rarely.
  const at::Tensor got = hidden.grad().to(at::kFloat), want = expected_grad.to(at::kFloat);
  const at::Tensor off = got != want;
  EXPECT_LE(off.sum().item<int64_t>(), kRowsHere * kWidth / 200);
  if (off.any().item<bool>()) {
    EXPECT_LE(((got - want).abs() / want.abs().clamp_min(1e-30)).masked_select(off).max().item<double>(), 1.0 / 128)
        << "more than one bf16 step off";
  }
  EXPECT_EQ(got[3][7].item<float>(), 0.0f);  // one-hot softmax, target hit: no gradient
}

TEST(LmHeadLoss, FusedBf16RowsMatchTheEagerOpsWithAFrozenHead) { check_fused_bf16_rows(false); }
TEST(LmHeadLoss, FusedBf16RowsMatchTheEagerOpsWithATrainedHead) { check_fused_bf16_rows(true); }

TEST(LmHeadLoss, TargetLogProbsAndGreedyMatchFullLogits) {
  Case c = random_case(at::kFloat, false);
  at::NoGradGuard no_grad;
  at::Tensor logits = at::linear(c.hidden, c.head).log_softmax(-1);
  at::Tensor targets = c.targets.clone();
  targets.narrow(0, 0, 50).copy_(logits.narrow(0, 0, 50).argmax(-1));  // some targets are the argmax
  auto [log_probs, greedy] = target_log_probs(c.hidden, c.head, targets);
  // Relative to their size (tens), as the losses above: a few fp32 ulps from summing in another order.
  const at::Tensor expected = logits.gather(1, targets.unsqueeze(1)).squeeze(1);
  const double scale = expected.abs().max().item<double>();
  expect_close(log_probs / scale, expected / scale, 1e-6);
  EXPECT_TRUE(at::equal(greedy, logits.argmax(-1) == targets));
  EXPECT_EQ(greedy.sum().item<int64_t>(), 50);
}

TEST(LmHeadLoss, NoRowsGivesAnEmptyLossAndZeroGradient) {
  at::Tensor hidden = at::randn({0, kHidden}).requires_grad_(true);
  at::Tensor loss = token_cross_entropy(hidden, at::randn({10, kHidden}), at::zeros({0}, at::kLong));
  EXPECT_EQ(loss.numel(), 0);
  loss.sum().backward();
  EXPECT_EQ(hidden.grad().numel(), 0);
}

}  // namespace
}  // namespace remora
