// Batched target scoring.
#include "eval/loglikelihood.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "eval/generate.h"
#include "model/lm_head_loss.h"

namespace remora {

std::vector<TargetScore> score_targets(CausalLM& model, const std::vector<TrainingExample>& examples,
                                       int64_t batch_size, const BatchProgress& on_batch) {
  REMORA_CHECK(batch_size >= 1, "--batch-size must be >= 1, got ", batch_size);
  at::NoGradGuard no_grad;
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return examples[a].ids.size() > examples[b].ids.size(); });
  const auto device = model.options().device();

  std::vector<TargetScore> scores(examples.size());
  for (size_t begin = 0; begin < order.size(); begin += batch_size) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    const int64_t B = static_cast<int64_t>(end - begin);
    const int64_t T = static_cast<int64_t>(examples[order[begin]].ids.size());
    std::vector<int64_t> ids(B * T, 0), mask(B * T, 0), prompt(B * T, 0);
    std::vector<int64_t> rows, positions, targets;  // one entry per target token
    for (int64_t b = 0; b < B; ++b) {
      const auto& example = examples[order[begin + b]];
      REMORA_CHECK(example.ids.size() == example.target.size(), "score_targets: ids and target differ in length");
      require_in_vocab(example.ids, model);
      for (size_t t = 0; t < example.ids.size(); ++t) {
        ids[b * T + t] = example.ids[t];
        mask[b * T + t] = 1;
        prompt[b * T + t] = static_cast<int64_t>(t) < routing_prefix_length(example);
        if (t > 0 && example.target[t]) {
          rows.push_back(b);
          positions.push_back(static_cast<int64_t>(t) - 1);  // the hidden state that predicts token t
          targets.push_back(example.ids[t]);
        }
      }
    }
    if (rows.empty()) {
      if (on_batch) on_batch(end, order.size());
      continue;
    }
    const at::Tensor mask_tensor = at::tensor(mask).view({B, T}).to(device);
    const at::Tensor routing_mask = at::tensor(prompt).view({B, T}).to(device);
    at::Tensor hidden = model.hidden_states(at::tensor(ids).view({B, T}).to(device), mask_tensor, nullptr,
                                            routing_mask);  // [B, T, D]
    at::Tensor row_index = at::tensor(rows).to(device), position_index = at::tensor(positions).to(device);
    at::Tensor picked = hidden.index({row_index, position_index});            // [N, D]
    auto [log_probs, greedy] = target_log_probs(picked, model.output_embedding(), at::tensor(targets).to(device));
    at::Tensor token_log_probs = log_probs.cpu().to(at::kDouble);
    at::Tensor is_best = greedy.cpu();
    const auto lp = token_log_probs.accessor<double, 1>();
    const auto best = is_best.accessor<bool, 1>();
    for (size_t i = 0; i < rows.size(); ++i) {
      TargetScore& score = scores[order[begin + rows[i]]];
      score.log_likelihood += lp[i];
      score.token_log_likelihoods.push_back(lp[i]);
      score.tokens++;
      score.greedy = score.greedy && best[i];
    }
    if (on_batch) on_batch(end, order.size());
  }
  return scores;
}

}  // namespace remora
