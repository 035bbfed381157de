// The loss of one micro-batch as a trainer backpropagates it, normalised by the whole step's tokens.
#pragma once

#include <ATen/ATen.h>

#include "train/batching.h"

namespace remora {

class AdaptedModel;
class CausalLM;

struct MicroBatchObjective {
  at::Tensor objective;           // scalar to backpropagate (its sum over a step's micro-batches is the step's)
  double loss_sum = 0;            // summed cross-entropy of the target tokens (mean over ReMix samples)
  double advantage_spread = 0;    // ReMix only
  double mean_log_prob = 0;       // ReMix only: mean log Q of the sampled selections
};

// Cross-entropy of `batch`'s target tokens divided by `step_target_tokens`, the target tokens of
// every micro-batch of the optimizer step, so accumulation gives the same gradient as one big
// batch. With any ReMix router the batch runs as `samples` x B rows in one forward and the router
// objective (RLOO or an ablation, adapter.router_objective) weights input b by its share of the
// step's tokens; balance losses (top-k) are added divided by `micro_batches`. With several workers,
// `placement` says where `batch` sits in the micro-batch they share (ReMix then samples the routes one
// process would) and `step_target_tokens` counts every worker's targets.
MicroBatchObjective micro_batch_objective(CausalLM& model, AdaptedModel* adapted, const Batch& batch,
                                          double step_target_tokens, int64_t samples, int64_t micro_batches,
                                          const BatchPlacement* placement = nullptr);

// Per-row sums of target-token cross-entropy [R] and target counts [R] (no normalisation).
// `routing_mask` [R, T]: the tokens sequence-level routers decide from (Batch::routing_mask).
std::pair<at::Tensor, at::Tensor> row_losses(CausalLM& model, const at::Tensor& ids, const at::Tensor& attention,
                                             const at::Tensor& target_mask, const at::Tensor& routing_mask);

}  // namespace remora
