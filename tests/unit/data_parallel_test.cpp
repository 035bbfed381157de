// Data-parallel shares, simulated in one process: the workers' shares of a micro-batch cover it
// exactly, and their gradients (ReMix's sampled routes included) add up to the whole batch's.
#include <gtest/gtest.h>

#include "adapter_test_util.h"
#include "train/batching.h"
#include "train/objective.h"

namespace remora {
namespace {
using namespace remora::testing;

TEST(WorkerShare, ContiguousRowsTheFirstWorkersTakingTheRemainder) {
  const auto examples = examples_of({5, 9, 6, 7, 8}, 2, 1);
  const std::vector<size_t> batch = {4, 0, 3, 1, 2};
  std::vector<int64_t> firsts, rows;
  int64_t targets = 0;
  for (int64_t rank = 0; rank < 2; ++rank) {
    const WorkerShare share = worker_share(examples, batch, 0, rank, 2);
    firsts.push_back(share.placement.first_row);
    rows.push_back(share.batch.ids.size(0));
    targets += share.batch.target_tokens;
    EXPECT_EQ(share.placement.global_rows, 5);
    EXPECT_EQ(share.placement.global_tokens, 9);
    EXPECT_EQ(share.global_target_tokens, collate(examples, batch, 0).target_tokens);
  }
  EXPECT_EQ(firsts, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(rows, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(targets, collate(examples, batch, 0).target_tokens);
  // The second worker's rows are the batch's last two, examples 1 (length 9) and 2 (length 6).
  const Batch second = worker_share(examples, batch, 0, 1, 2).batch;
  EXPECT_TRUE(second.ids[0].equal(collate(examples, {1}, 0).ids[0]));
  EXPECT_TRUE(second.ids[1].narrow(0, 0, 6).equal(collate(examples, {2}, 0).ids[0]));
}

TEST(WorkerShare, AWorkerWithoutRowsGetsOnePaddingRowThatCountsNothing) {
  const auto examples = examples_of({5, 9}, 2, 1);
  const WorkerShare share = worker_share(examples, {1}, 7, 1, 2);
  EXPECT_EQ(share.batch.ids.size(0), 1);
  EXPECT_EQ(share.batch.attention.sum().item<int64_t>(), 0);
  EXPECT_EQ(share.batch.target_tokens, 0);
  EXPECT_EQ(share.global_target_tokens, 7);
}

// The gradient of one process over the whole micro-batch, and the sum over `workers` simulated workers
// of theirs, each starting from the same routing generator state (as every worker's generator is).
void expect_workers_add_up(AdapterConfig config, int64_t workers) {
  AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
  randomize_b(adapted, 3, 0.5);
  adapted.set_training(true);
  std::vector<at::Tensor> parameters = adapted.adapter_parameters();
  for (const auto& p : adapted.router_parameters()) parameters.push_back(p);
  const auto examples = examples_of({9, 6, 11, 7, 8}, 3, 20);
  const std::vector<size_t> batch = {2, 0, 4, 1, 3};
  const int64_t samples = config.method == AdapterMethod::kRemix ? 4 : 1;

  auto gradients = [&](const std::function<void()>& run) {
    for (const auto& p : parameters) p.mutable_grad() = at::Tensor();
    adapted.routing().generator = at::make_generator<at::CPUGeneratorImpl>(5);
    run();
    std::vector<at::Tensor> grads;
    for (const auto& p : parameters) grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    return grads;
  };
  const Batch whole = collate(examples, batch, 0);
  const auto expected = gradients([&] {
    micro_batch_objective(adapted.model(), &adapted, whole, whole.target_tokens, samples, 1).objective.backward();
  });
  std::vector<at::Tensor> summed;
  for (int64_t rank = 0; rank < workers; ++rank) {
    const WorkerShare share = worker_share(examples, batch, 0, rank, workers);
    const auto part = gradients([&] {
      micro_batch_objective(adapted.model(), &adapted, share.batch, share.global_target_tokens, samples, 1,
                            &share.placement)
          .objective.backward();
    });
    if (summed.empty()) {
      summed = part;
    } else {
      for (size_t i = 0; i < part.size(); ++i) summed[i] += part[i];
    }
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(at::allclose(summed[i], expected[i], 1e-4, 1e-6))
        << "parameter " << i << ": max difference " << (summed[i] - expected[i]).abs().max().item<double>();
  }
}

TEST(DataParallelGradients, RemixTokenRoutingWorkersSampleTheRoutesOneProcessWould) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  expect_workers_add_up(config, 2);
  expect_workers_add_up(config, 3);
  expect_workers_add_up(config, 7);  // two workers without rows
}

TEST(DataParallelGradients, RemixSequenceRouting) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.routing = RoutingGranularity::kSequence;
  expect_workers_add_up(config, 2);
}

TEST(DataParallelGradients, Lora) { expect_workers_add_up(adapter_config(AdapterMethod::kLora), 2); }

}  // namespace
}  // namespace remora
