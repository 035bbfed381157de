// RoutingState accumulators and routing capture.
#include "adapters/routing.h"

namespace remora {

void RoutingState::reset() {
  log_prob = at::Tensor();
  aux_loss = at::Tensor();
  pooled_balance.clear();
}

void RoutingState::add_log_prob(const at::Tensor& per_row) {
  log_prob = log_prob.defined() ? log_prob + per_row : per_row;
}

void RoutingState::add_aux_loss(const at::Tensor& loss) {
  aux_loss = aux_loss.defined() ? aux_loss + loss : loss;
}

void RoutingState::add_pooled_balance(double coef, const at::Tensor& chosen, const at::Tensor& probs,
                                      const at::Tensor& tokens) {
  PooledBalance& pool = pooled_balance[chosen.size(0)];
  if (!pool.chosen.defined()) {
    pool = {coef, chosen, probs, tokens};
    return;
  }
  pool.chosen = pool.chosen + chosen;
  pool.probs = pool.probs + probs;
  pool.tokens = pool.tokens + tokens;
}

at::Tensor PooledBalance::loss() const {
  at::Tensor count = tokens.clamp_min(1);
  return coef * chosen.size(0) * ((chosen / count) * (probs / count)).sum();
}

at::Tensor RoutingState::auxiliary_loss() const {
  at::Tensor total = aux_loss;
  for (const auto& [n, pool] : pooled_balance) total = total.defined() ? total + pool.loss() : pool.loss();
  return total;
}

void Router::initialize(double init_std, at::Generator& generator) {
  at::NoGradGuard no_grad;
  for (auto& p : parameters()) p.normal_(0.0, init_std, generator);
}

void RoutingCapture::add(const std::string& site, const Gate& gate, const at::Tensor& valid) {
  at::NoGradGuard no_grad;
  Record& record = sites[site];
  record.weights.push_back(gate.weights.detach().index({valid}).to(at::kCPU));
  if (gate.probs.defined()) record.probs.push_back(gate.probs.detach().index({valid}).to(at::kCPU));
  if (gate.selected.defined()) {
    record.selected.push_back(gate.selected.index({valid}).to(at::kCPU));
  }
}

}  // namespace remora
