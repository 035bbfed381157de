// SMoRA router: sigmoid scores plus a loss-free balancing bias, top-k ranks.
#include <cmath>

#include "adapters/routers/router_logits.h"
#include "adapters/routers/smora_gate.h"
#include "adapters/routers/routers.h"

namespace remora {

SmoraRouter::SmoraRouter(int64_t input_size, int64_t ranks, int64_t k, double bias_rate, int64_t rank_partition)
    : k_(k), bias_rate_(bias_rate), rank_partition_(rank_partition) {
  weight = register_parameter("weight", at::empty({ranks / rank_partition, input_size}, at::kFloat));
  balance_bias = register_buffer("balance_bias", at::zeros({ranks}, at::kFloat));
  const double bound = 1.0 / std::sqrt(static_cast<double>(input_size));
  at::NoGradGuard no_grad;
  weight.uniform_(-bound, bound);
}

void SmoraRouter::initialize(double, at::Generator& generator) {
  // nn.Linear's default, kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(d), 1/sqrt(d)): the official code
  // never re-initialises its router.
  const double bound = 1.0 / std::sqrt(static_cast<double>(weight.size(1)));
  at::NoGradGuard no_grad;
  weight.uniform_(-bound, bound, generator);
}

Gate SmoraRouter::route(const at::Tensor& x, const at::Tensor& valid, int64_t, RoutingState& state) {
  const at::Tensor logits = router_logits(x, weight);  // [N, R / rank_partition]
  const at::Tensor bias = state.remember(balance_bias);
  at::Tensor weights, affinity, selected;
  if (smora_gate_applies(logits, bias)) {
    SmoraGate gate = smora_gate(logits, bias, k_, rank_partition_);
    weights = gate.weights, affinity = gate.affinity, selected = gate.selected;
  } else {
    affinity = at::sigmoid(logits);                                                        // s
    if (rank_partition_ > 1) affinity = affinity.repeat_interleave(rank_partition_, -1);  // [N, R]
    at::Tensor scores = affinity + bias;                                                   // [N, R] s + b
    selected = std::get<1>(scores.detach().topk(k_, -1));                                 // [N, k]
    at::Tensor top = scores.gather(-1, selected);
    // The gate values are the biased scores, renormalised to sum to k, as the official code computes them.
    weights = at::zeros_like(scores).scatter(-1, selected, k_ * top / top.sum(-1, true));
  }
  if (state.training && bias_rate_ > 0 && !state.replaying()) {  // once per step, not again when recomputed
    at::NoGradGuard no_grad;
    at::Tensor picks = selected.index({valid}).flatten();
    at::Tensor load = at::bincount(picks, {}, balance_bias.size(0)).to(at::kFloat);  // c_i
    std::vector<at::Tensor> loads{load};
    state.sum_statistics(loads);  // with several workers: the whole micro-batch's load
    balance_bias.add_(bias_rate_ * at::sign(load.mean() - load));
  }
  // Statistics (entropy) describe the router's own scores s, without the balancing bias.
  return {weights, affinity.detach(), selected};
}

}  // namespace remora
