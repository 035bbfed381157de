// SMoRA's fused gate against the official formula run as LibTorch ops, forward and backward.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "adapters/routers/smora_gate.h"

namespace remora {
namespace {

struct Eager {
  at::Tensor weights, affinity, selected;
};

// sigmoid, repeat_interleave to ranks, + bias, top k, k t / sum t (StyxXuan/smora, srmole/layer.py).
Eager official_formula(const at::Tensor& logits, const at::Tensor& bias, int64_t k, int64_t partition) {
  at::Tensor affinity = at::sigmoid(logits).repeat_interleave(partition, -1);
  at::Tensor scores = affinity + bias;
  auto [top, selected] = scores.topk(k, -1);
  return {at::zeros_like(scores).scatter(-1, selected, k * top / top.sum(-1, true)), affinity, selected};
}

void expect_matches_the_formula(int64_t tokens, int64_t groups, int64_t partition, int64_t k) {
  at::manual_seed(groups * 31 + k);
  const int64_t ranks = groups * partition;
  at::Tensor logits = (at::randn({tokens, groups}) * 2).requires_grad_(true);
  at::Tensor same = logits.detach().clone().requires_grad_(true);
  at::Tensor bias = at::randn({ranks}) * 0.1;  // splits the ranks of each group: no ties
  at::Tensor grad = at::randn({tokens, ranks});
  SmoraGate gate = smora_gate(logits, bias, k, partition);
  Eager eager = official_formula(same, bias, k, partition);
  EXPECT_TRUE(at::equal(gate.selected, eager.selected)) << "same ranks in the same order";
  EXPECT_TRUE(at::allclose(gate.weights, eager.weights, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(gate.affinity, eager.affinity, 1e-6, 1e-7));
  EXPECT_FALSE(gate.affinity.requires_grad());
  (gate.weights * grad).sum().backward();
  (eager.weights * grad).sum().backward();
  EXPECT_TRUE(at::allclose(logits.grad(), same.grad(), 1e-4, 1e-6))
      << (logits.grad() - same.grad()).abs().max().item<double>();
}

TEST(SmoraGate, MatchesTheOfficialFormulaForwardAndBackward) {
  expect_matches_the_formula(37, 64, 1, 8);   // SMoRA's usual shape: 64 ranks, top 8
  expect_matches_the_formula(37, 4, 2, 3);    // blocks of 2 ranks, an odd k no block gives
  expect_matches_the_formula(5, 6, 1, 6);     // every rank active
  expect_matches_the_formula(9, 16, 4, 1);
}

TEST(SmoraGate, NoGradientModeGivesTheSameGate) {
  at::Tensor logits = at::randn({11, 8}).requires_grad_(true), bias = at::randn({16}) * 0.1;
  SmoraGate with = smora_gate(logits, bias, 3, 2);
  at::NoGradGuard no_grad;
  SmoraGate without = smora_gate(logits, bias, 3, 2);
  EXPECT_TRUE(at::equal(with.weights.detach(), without.weights));
  EXPECT_TRUE(at::equal(with.selected, without.selected));
}

// The two ranks of a block share their score when their biases are equal (at the start of training
// every bias is 0): the lower rank goes first.
TEST(SmoraGate, TiesGoToTheLowerRank) {
  at::Tensor logits = at::tensor({0.3f, 0.3f, -1.0f}).view({1, 3});
  SmoraGate gate = smora_gate(logits, at::zeros({6}), 3, 2);
  EXPECT_TRUE(at::equal(gate.selected, at::tensor({0, 1, 2}, at::kLong).view({1, 3})));
  EXPECT_TRUE(at::allclose(gate.weights.narrow(1, 0, 3), at::ones({1, 3})));
}

// A NaN logit is chosen (as at::topk ranks NaN highest) and makes the token's weights NaN, so a
// diverged router shows in the loss rather than routing around it.
TEST(SmoraGate, NanLogitReachesTheWeights) {
  at::Tensor logits = at::tensor({0.1f, std::numeric_limits<float>::quiet_NaN(), 0.5f, -0.2f}).view({1, 4});
  SmoraGate gate = smora_gate(logits, at::zeros({4}), 2, 1);
  EXPECT_EQ(gate.selected[0][0].item<int64_t>(), 1);
  EXPECT_TRUE(gate.weights.isnan().any().item<bool>());
}

TEST(SmoraGate, RejectsABiasOfTheWrongSize) {
  EXPECT_THROW(smora_gate(at::randn({2, 4}), at::zeros({6}), 2, 2), std::exception);
  EXPECT_THROW(smora_gate(at::randn({2, 4}), at::zeros({8}), 9, 2), std::exception);
}

}  // namespace
}  // namespace remora
