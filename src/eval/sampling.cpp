// Greedy and stochastic next-token choice.
#include "eval/sampling.h"

#include <ATen/ATen.h>

#include <limits>

#include "core/error.h"

namespace remora {

void SamplingOptions::validate() const {
  REMORA_CHECK(temperature >= 0, "--temperature must be >= 0, got ", temperature);
  REMORA_CHECK(top_k >= 0, "--top-k must be >= 0, got ", top_k);
  REMORA_CHECK(top_p > 0 && top_p <= 1, "--top-p must be in (0, 1], got ", top_p);
}

at::Tensor choose_next_tokens(const at::Tensor& logits, const SamplingOptions& options,
                              at::Generator& generator) {
  at::Tensor scores = logits.to(at::kCPU, at::kFloat);
  if (options.temperature == 0) return scores.argmax(-1);

  scores = scores / options.temperature;
  const float removed = -std::numeric_limits<float>::infinity();
  if (options.top_k > 0 && options.top_k < scores.size(-1)) {
    at::Tensor kth = std::get<0>(scores.topk(options.top_k, -1)).narrow(-1, options.top_k - 1, 1);
    scores = scores.masked_fill(scores < kth, removed);
  }
  if (options.top_p < 1.0) {
    auto [sorted, order] = scores.sort(-1, /*descending=*/true);
    at::Tensor probs = sorted.softmax(-1);
    // Drop a token when the tokens ranked above it already reach top_p; the first always stays.
    at::Tensor mass_before = probs.cumsum(-1) - probs;
    at::Tensor drop_sorted = mass_before >= options.top_p;
    at::Tensor drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    scores = scores.masked_fill(drop, removed);
  }
  return at::multinomial(scores.softmax(-1), 1, /*replacement=*/false, generator).squeeze(-1);
}

}  // namespace remora
