// Micro-batch objectives: token-normalised cross-entropy, RLOO for ReMix, balance losses.
#include "train/objective.h"

#include "adapters/adapted_model.h"
#include "model/lm_head_loss.h"
#include "train/rloo.h"

namespace remora {

std::pair<at::Tensor, at::Tensor> row_losses(CausalLM& model, const at::Tensor& ids, const at::Tensor& attention,
                                             const at::Tensor& target_mask, const at::Tensor& routing_mask) {
  const auto device = model.options().device();
  at::Tensor hidden = model.hidden_states(ids.to(device), attention.to(device), nullptr, routing_mask);  // [R, T, D]
  const int64_t R = ids.size(0), T = ids.size(1);
  // Only the positions whose next token is a target go through the LM head (hidden state t predicts
  // token t + 1); prompts and padding cost neither logits nor a zero-filled gradient.
  at::Tensor weights = target_mask.narrow(1, 1, T - 1).to(device, at::kFloat);  // [R, T - 1]
  at::Tensor picked = weights.reshape({-1}).nonzero().squeeze(1);               // into [R (T - 1)]
  at::Tensor row = picked.div(T - 1, "floor");
  at::Tensor predicting = row * T + picked.remainder(T - 1);  // into [R T]
  at::Tensor token_loss = token_cross_entropy(hidden.reshape({R * T, -1}).index_select(0, predicting),
                                              model.output_embedding(),
                                              ids.to(device).reshape({-1}).index_select(0, predicting + 1));
  at::Tensor token_weight = weights.reshape({-1}).index_select(0, picked);
  at::Tensor sums = at::zeros({R}, token_loss.options()).index_add(0, row, token_loss * token_weight);
  return {sums, weights.sum(1)};
}

MicroBatchObjective micro_batch_objective(CausalLM& model, AdaptedModel* adapted, const Batch& batch,
                                          double step_target_tokens, int64_t samples, int64_t micro_batches,
                                          const BatchPlacement* placement) {
  const bool policy = adapted && adapted->has_policy_routers();
  if (!policy) samples = 1;
  const int64_t B = batch.ids.size(0);
  if (adapted) {
    adapted->routing().reset();
    const BatchPlacement whole{0, B, batch.ids.size(1)};
    const BatchPlacement& place = placement ? *placement : whole;
    adapted->routing().noise_window = RoutingState::NoiseWindow{samples, place.global_rows, place.first_row,
                                                                place.global_tokens};
  }
  // ReMix: the M routed samples of each input are rows of one batch (row m B + b is input b).
  auto [sums, tokens] = row_losses(model, batch.ids.repeat({samples, 1}), batch.attention.repeat({samples, 1}),
                                   batch.target_mask.repeat({samples, 1}), batch.routing_mask.repeat({samples, 1}));
  if (adapted) adapted->routing().noise_window.reset();
  MicroBatchObjective out;
  if (policy) {
    at::Tensor per_sample = sums.view({samples, B});
    at::Tensor input_tokens = tokens.view({samples, B})[0];
    RlooObjective rloo = rloo_objective(per_sample / input_tokens.clamp_min(1),
                                        adapted->routing().log_prob.view({samples, B}),
                                        input_tokens / step_target_tokens, adapted->config().router_objective);
    out.objective = rloo.objective;
    out.advantage_spread = rloo.advantage_spread;
    out.mean_log_prob = rloo.mean_log_prob;
    out.loss_sum = per_sample.sum().item<double>() / samples;
  } else {
    out.objective = sums.sum() / step_target_tokens;
    out.loss_sum = sums.sum().item<double>();
  }
  if (adapted) {
    const at::Tensor balance = adapted->routing().auxiliary_loss();
    if (balance.defined()) out.objective = out.objective + balance / static_cast<double>(micro_batches);
  }
  return out;
}

}  // namespace remora
