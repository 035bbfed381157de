// Resumable training checkpoints: trainable weights, optimizer, RNG states and data position,
// written as one folder that appears atomically (temporary name, then rename).
#pragma once

#include <ATen/core/Generator.h>
#include <torch/optim/adamw.h>

#include <optional>
#include <string>

namespace remora {

class AdaptedModel;
class CausalLM;

// Where training stands after `step` optimizer steps.
struct TrainingProgress {
  int64_t step = 0;
  int64_t epoch = 0;           // epoch of the next micro-batch
  int64_t batch_in_epoch = 0;  // index of the next micro-batch in that epoch's plan
  int64_t tokens = 0;          // input tokens trained on so far
  double seconds = 0;          // training wall time so far
  int64_t global_batch_size = 0;  // train.batch_size x workers of the run (0: not recorded): the plan's batches
};

// <output>/checkpoints/step-NNNNNNNN/ holding adapter/ (or model/ for full fine-tuning),
// optimizer.pt, rng.safetensors and progress.json. Keeps the newest `keep_last` checkpoints.
void write_checkpoint(const std::string& output_dir, const AdaptedModel* adapted, CausalLM& model,
                      torch::optim::AdamW& optimizer, const TrainingProgress& progress,
                      const at::Generator& routing_generator, int64_t keep_last);

// The newest complete checkpoint folder under <output>/checkpoints, if any.
std::optional<std::string> latest_checkpoint(const std::string& output_dir);

// Restores optimizer state and RNG states from `checkpoint`; returns the progress. (Weights are
// read by the caller: load_adapter(checkpoint/adapter) or load_causal_lm(checkpoint/model).)
TrainingProgress read_checkpoint(const std::string& checkpoint, torch::optim::AdamW& optimizer,
                                 at::Generator& routing_generator);

}  // namespace remora
