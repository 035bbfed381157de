// Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace remora {

struct SamplingOptions {
  double temperature = 0.0;  // 0 = greedy (argmax); > 0 samples from softmax(logits / temperature)
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest set whose probability reaches top_p; 1 = all
  uint64_t seed = 0;

  // Throws Error naming the option if a value is out of range.
  void validate() const;
};

// logits [B, V] fp32 -> next tokens [B] int64 (CPU). Filters apply in HF's order: temperature,
// top-k, top-p. `generator` is used only when sampling.
at::Tensor choose_next_tokens(const at::Tensor& logits, const SamplingOptions& options,
                              at::Generator& generator);

}  // namespace remora
