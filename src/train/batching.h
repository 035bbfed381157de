// Grouping examples into padded batches: deterministic by seed and epoch, similar lengths together.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "train/data.h"

namespace remora {

// One micro-batch, right-padded. Shapes: B rows, T = longest row.
struct Batch {
  at::Tensor ids;          // [B, T] int64
  at::Tensor attention;    // [B, T] int64, 1 for tokens
  at::Tensor target_mask;  // [B, T] float, 1 where the token is predicted by the previous position
  at::Tensor routing_mask; // [B, T] bool, the tokens a sequence-level router decides from (the prompt)
  int64_t target_tokens = 0;
};

// The batches of one epoch as example indices: shuffled by (seed, epoch), sorted by length within
// windows of 64 batches so padding stays small, then the batch order shuffled again.
std::vector<std::vector<size_t>> plan_epoch(const std::vector<TrainingExample>& examples, int64_t batch_size,
                                            uint64_t seed, int64_t epoch);

Batch collate(const std::vector<TrainingExample>& examples, const std::vector<size_t>& indices, int64_t pad_id);

// Where a worker's rows sit in the micro-batch that several workers share.
struct BatchPlacement {
  int64_t first_row = 0;      // the worker's first row in the whole micro-batch
  int64_t global_rows = 0;    // rows of the whole micro-batch
  int64_t global_tokens = 0;  // the whole micro-batch's padded length
};

// The part of a micro-batch that worker `rank` of `workers` trains on, when several workers share
// every micro-batch: contiguous rows, the first workers holding one more when it does not divide.
struct WorkerShare {
  Batch batch;  // this worker's rows; one padding row (no token counts) when it has none
  BatchPlacement placement;
  int64_t global_target_tokens = 0;  // target tokens of the whole micro-batch
};
WorkerShare worker_share(const std::vector<TrainingExample>& examples, const std::vector<size_t>& indices,
                         int64_t pad_id, int64_t rank, int64_t workers);

}  // namespace remora
