// RoutingState accumulators and routing capture.
#include "adapters/routing.h"

#include "core/error.h"

namespace remora {

void RoutingState::reset() {
  log_prob = at::Tensor();
  aux_loss = at::Tensor();
  pooled_balance.clear();
}

at::Tensor RoutingState::remember(const at::Tensor& value) {
  if (!tape) return value;
  if (!tape->replaying) {
    tape->values.push_back(value.detach().clone());
    return value;
  }
  REMORA_CHECK(tape->next < tape->values.size(), "checkpoint replay: a router asked for more remembered values than it kept");
  return tape->values[tape->next++];
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

at::Tensor PooledBalance::loss(const RoutingState& state) const {
  std::vector<at::Tensor> counts{chosen.detach().clone(), tokens.detach().clone()};
  state.sum_statistics(counts);
  at::Tensor count = counts[1].clamp_min(1);
  return coef * chosen.size(0) * ((counts[0] / count) * (probs / count)).sum();
}

at::Tensor RoutingState::auxiliary_loss() const {
  at::Tensor total = aux_loss;
  for (const auto& [n, pool] : pooled_balance) {
    const at::Tensor loss = pool.loss(*this);
    total = total.defined() ? total + loss : loss;
  }
  return total;
}

void RoutingState::sum_statistics(std::vector<at::Tensor>& statistics) const {
  if (sum_over_workers) sum_over_workers(statistics);
}

at::Tensor RoutingState::uniform_noise(int64_t rows, int64_t items, int64_t n) const {
  auto draw = [&](at::IntArrayRef shape) {
    return generator ? at::rand(shape, *generator, at::kFloat) : at::rand(shape, at::kFloat);
  };
  if (!noise_window) return draw({rows * items, n});
  const NoiseWindow& window = *noise_window;
  const int64_t inputs = rows / window.samples, global_items = items == 1 ? 1 : window.global_tokens;
  REMORA_CHECK(rows % window.samples == 0 && window.first_row + inputs <= window.global_rows && items <= global_items,
               "routing noise: ", rows, " rows of ", items, " items do not fit the micro-batch window (",
               window.samples, " samples of ", window.global_rows, " inputs from ", window.first_row, ", ",
               window.global_tokens, " tokens)");
  // [samples, rows, items, n] is the order of one process's [samples * rows * items, n] draw.
  return draw({window.samples, window.global_rows, global_items, n})
      .narrow(1, window.first_row, inputs)
      .narrow(2, 0, items)
      .reshape({rows * items, n});
}

void Router::initialize(double init_std, at::Generator& generator) {
  at::NoGradGuard no_grad;
  for (auto& p : parameters()) p.normal_(0.0, init_std, generator);
}

void RoutingCapture::add(const std::string& site, const Gate& gate, const at::Tensor& valid) {
  at::NoGradGuard no_grad;
  Record& record = sites[site];
  record.experts = gate.weights.size(-1);
  const at::Tensor weights = gate.weights.detach().index({valid});
  if (gate.selected.defined()) {
    const at::Tensor selected = gate.selected.index({valid});
    record.weights.push_back(weights.gather(-1, selected).to(at::kCPU));
    record.selected.push_back(selected.to(at::kCPU, at::kInt));
  } else {
    record.weights.push_back(weights.to(at::kCPU));
  }
  if (gate.probs.defined()) {
    const at::Tensor probs = gate.probs.detach().index({valid}).to(at::kCPU);
    // As a distribution: SMoRA's sigmoid scores do not sum to 1 (softmax routers' do already).
    at::Tensor p = probs.to(at::kDouble);
    p = p / p.sum(-1, true).clamp_min(1e-30);
    record.entropy.push_back(-(p * p.clamp_min(1e-30).log()).sum(-1));
    if (keep_probs) record.probs.push_back(probs.to(at::kFloat));
  }
}

}  // namespace remora
