// RoutingState accumulators and routing capture.
#include "adapters/routing.h"

namespace remora {

void RoutingState::reset() {
  log_prob = at::Tensor();
  aux_loss = at::Tensor();
}

void RoutingState::add_log_prob(const at::Tensor& per_row) {
  log_prob = log_prob.defined() ? log_prob + per_row : per_row;
}

void RoutingState::add_aux_loss(const at::Tensor& loss) {
  aux_loss = aux_loss.defined() ? aux_loss + loss : loss;
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
