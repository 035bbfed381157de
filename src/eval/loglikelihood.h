// Log-likelihood of target tokens under a model, batched: for choice scoring and perplexity.
#pragma once

#include <vector>

#include "eval/generate.h"
#include "model/decoder.h"
#include "train/data.h"

namespace remora {

struct TargetScore {
  double log_likelihood = 0;  // Σ log p(token | everything before it) over the target tokens
  int64_t tokens = 0;         // target tokens scored
  bool greedy = true;         // every target token is the model's most likely one
  std::vector<double> token_log_likelihoods;  // one per target token, in order
};

// Scores each example's target tokens (ids and mask as training data builds them) in right-padded
// batches of `batch_size`, longest first; results keep the examples' order. Logits are computed only
// at target positions, so memory does not grow with vocab × sequence length.
// Sequence-level routers decide from each example's prompt (routing_prefix_length), as training
// and generation do. `on_batch` is told (examples done, examples in all) after each batch.
std::vector<TargetScore> score_targets(CausalLM& model, const std::vector<TrainingExample>& examples,
                                       int64_t batch_size, const BatchProgress& on_batch = {});

}  // namespace remora
