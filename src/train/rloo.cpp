// RLOO objective.
#include "train/rloo.h"

#include "core/error.h"

namespace remora {

RlooObjective rloo_objective(const at::Tensor& losses, const at::Tensor& log_probs,
                             const at::Tensor& input_weights, RouterObjective kind) {
  REMORA_CHECK(losses.dim() == 2 && losses.sizes() == log_probs.sizes(), "rloo: losses ",
               losses.sizes(), " and log-probabilities ", log_probs.sizes(), " must both be [M, B]");
  const int64_t M = losses.size(0);
  REMORA_CHECK(M >= 2 || kind != RouterObjective::kRloo, "rloo: M = ", M,
               " routed samples per input; the leave-one-out baseline needs M >= 2");
  at::Tensor advantage = (losses - losses.mean(0, true)).detach();  // [M, B]
  at::Tensor per_input = losses.mean(0);                            // [B]
  if (kind == RouterObjective::kRloo) {
    per_input = per_input + (advantage / (M - 1) * log_probs).sum(0);
  } else if (kind == RouterObjective::kReinforce) {
    per_input = per_input + (losses.detach() / M * log_probs).sum(0);
  }
  RlooObjective result;
  if (input_weights.defined()) {
    REMORA_CHECK(input_weights.sizes() == per_input.sizes(), "rloo: input weights ", input_weights.sizes(),
                 " do not match the ", per_input.size(0), " inputs");
    result.objective = (per_input * input_weights).sum();
  } else {
    result.objective = per_input.mean();
  }
  result.mean_loss = losses.detach().mean().item<double>();
  result.advantage_spread = advantage.std(/*unbiased=*/false).item<double>();
  result.mean_log_prob = log_probs.detach().mean().item<double>();
  return result;
}

}  // namespace remora
