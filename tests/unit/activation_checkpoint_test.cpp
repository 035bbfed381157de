// Activation checkpointing recomputes each layer in the backward: for every adapter variant (and
// full fine-tuning) the gradients, the step's objective and the routers' state equal, bit for bit,
// those of the same step without it (one thread), with adapter dropout on.
#include <gtest/gtest.h>

#include "adapter_test_util.h"
#include "train/activation_checkpoint.h"
#include "train/batching.h"
#include "train/objective.h"

namespace remora {
namespace {
using namespace remora::testing;

struct StepResult {
  double objective = 0;
  std::vector<at::Tensor> grads, buffers;
};

// One micro-batch's objective and backward from the same generator states and router buffers.
StepResult run_step(CausalLM& model, AdaptedModel* adapted, const std::vector<at::Tensor>& parameters,
                    const std::vector<at::Tensor>& initial_buffers) {
  at::manual_seed(11);  // dropout
  StepResult result;
  if (adapted) {
    adapted->routing().generator = at::make_generator<at::CPUGeneratorImpl>(7);
    at::NoGradGuard no_grad;
    const auto buffers = adapted->model().buffers();
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(initial_buffers[i]);
  }
  const Batch batch = collate(examples_of({9, 7, 8}, 3, 20), {0, 1, 2}, 0);
  MicroBatchObjective step = micro_batch_objective(model, adapted, batch, static_cast<double>(batch.target_tokens), 3, 1);
  step.objective.backward();
  result.objective = step.objective.item<double>();
  for (const auto& p : parameters) {
    result.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    p.mutable_grad() = at::Tensor();
  }
  for (const auto& b : model.buffers()) result.buffers.push_back(b.clone());
  return result;
}

// Counts the runs of the first block's input hook (one per forward; two per step when recomputed).
void count_block_runs(CausalLM& model, int64_t& runs) {
  auto block = model.projection_blocks()[0].block;
  block->input_hook = [original = block->input_hook, &runs](const at::Tensor& x, const ForwardContext& context) {
    ++runs;
    if (original) original(x, context);
  };
}

void expect_same_step(CausalLM& model, AdaptedModel* adapted, const std::vector<at::Tensor>& parameters) {
  at::set_num_threads(1);
  std::vector<at::Tensor> initial_buffers;
  for (const auto& b : model.buffers()) initial_buffers.push_back(b.clone());
  int64_t block_runs = 0;  // how often the first block ran (retrieval's pre-pass runs it once more)
  count_block_runs(model, block_runs);
  StepResult first = run_step(model, adapted, parameters, initial_buffers);
  const int64_t plain_runs = block_runs;
  enable_activation_checkpointing(model, adapted ? &adapted->routing() : nullptr);
  block_runs = 0;
  StepResult second = run_step(model, adapted, parameters, initial_buffers);
  EXPECT_EQ(block_runs, plain_runs + 1) << "a checkpointed layer runs again in the backward";
  EXPECT_NEAR(second.objective, first.objective, 1e-6 * std::abs(first.objective));
  ASSERT_EQ(first.grads.size(), second.grads.size());
  int64_t with_gradient = 0;
  for (size_t i = 0; i < first.grads.size(); ++i) {
    ASSERT_EQ(first.grads[i].defined(), second.grads[i].defined()) << "parameter " << i;
    if (!first.grads[i].defined()) continue;
    ++with_gradient;
    EXPECT_TRUE(at::equal(first.grads[i], second.grads[i]))
        << "parameter " << i << ": max difference " << (first.grads[i] - second.grads[i]).abs().max().item<double>();
  }
  EXPECT_GT(with_gradient, 0);
  // SMoRA's bias was updated once, as without checkpointing, and nothing else changed.
  ASSERT_EQ(first.buffers.size(), second.buffers.size());
  for (size_t i = 0; i < first.buffers.size(); ++i) EXPECT_TRUE(at::equal(first.buffers[i], second.buffers[i])) << "buffer " << i;
}

class ActivationCheckpoint : public ::testing::TestWithParam<std::pair<std::string, AdapterConfig>> {};

TEST_P(ActivationCheckpoint, GradientsObjectiveAndRouterStateEqualTheStepWithout) {
  AdapterConfig config = GetParam().second;
  config.lora_dropout = 0.1;  // the recompute must draw the same masks
  AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
  randomize_b(adapted, 3, 0.5);
  adapted.set_training(true);
  std::vector<at::Tensor> parameters = adapted.adapter_parameters();
  for (const auto& p : adapted.router_parameters()) parameters.push_back(p);
  expect_same_step(adapted.model(), &adapted, parameters);
}

INSTANTIATE_TEST_SUITE_P(EveryMethod, ActivationCheckpoint, ::testing::ValuesIn(all_variants()),
                         [](const auto& info) { return info.param.first; });

TEST(ActivationCheckpointFull, EveryWeightTrainingGetsTheSameGradients) {
  auto model = random_model(toy_config("llama"), 2, 0.1);
  std::vector<at::Tensor> parameters = model->parameters();
  for (auto& p : parameters) p.set_requires_grad(true);
  model->train();
  expect_same_step(*model, nullptr, parameters);
}

}  // namespace
}  // namespace remora
