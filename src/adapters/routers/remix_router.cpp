// ReMix router: Gumbel-top-k sampling with Plackett-Luce log-probabilities, constant weights.
#include <cmath>
#include <limits>

#include "adapters/routers/router_init.h"
#include "adapters/routers/router_logits.h"
#include "adapters/routers/routers.h"

namespace remora {

RemixRouter::RemixRouter(int64_t input_size, int64_t experts, int64_t k, double omega,
                         bool sample_at_inference, double init_std)
    : k_(k), omega_(omega), sample_at_inference_(sample_at_inference) {
  weight = register_parameter("weight", new_router_weight(experts, input_size, init_std));
}

Gate RemixRouter::route(const at::Tensor& x, const at::Tensor& valid, int64_t rows,
                        RoutingState& state) {
  // The router reads a detached copy of its input: the score-function term then trains P alone, and
  // the LoRA factors get exactly the gradient of mean_m L(J_m) at the sampled selections (spec
  // section 3). Letting it flow into earlier adapters adds variance that grows with tokens x layers.
  at::Tensor log_q = at::log_softmax(router_logits(x.detach(), weight), -1);  // [N, n]
  at::Tensor selected;
  if (state.training || sample_at_inference_) {
    // Gumbel-top-k: the top k of log q + Gumbel noise, in order, is a sample of k experts drawn
    // one after another without replacement from q.
    // Noise is drawn on the CPU (the state's generator is a CPU one) and moved to the router's device.
    at::Tensor uniform = state.uniform_noise(rows, log_q.size(0) / rows, log_q.size(1));
    at::Tensor gumbel = -at::log(-at::log(uniform.clamp(1e-20, 1.0 - 1e-7))).to(log_q.device());
    selected = std::get<1>((log_q.detach() + gumbel).topk(k_, -1, /*largest=*/true, /*sorted=*/true));
  } else {
    selected = std::get<1>(log_q.topk(k_, -1));
  }
  if (state.training) {
    // Plackett-Luce: log Q(J) = sum_j log q_{i_j} - log(1 - sum_{j' < j} q_{i_j'}). The remaining
    // mass is a logsumexp over the experts not yet picked, which stays exact when the router is
    // confident (1 - sum of probabilities cancels in fp32).
    at::Tensor remaining = log_q;
    at::Tensor per_item = at::zeros({log_q.size(0)}, log_q.options());
    for (int64_t j = 0; j < k_; ++j) {
      at::Tensor pick = selected.narrow(-1, j, 1);
      per_item = per_item + remaining.gather(-1, pick).squeeze(-1) - remaining.logsumexp(-1);
      remaining = remaining.scatter(-1, pick, -std::numeric_limits<float>::infinity());
    }
    per_item = per_item * valid.to(per_item.scalar_type());
    state.add_log_prob(per_item.view({rows, -1}).sum(-1));
  }
  at::Tensor weights = at::zeros_like(log_q).scatter(-1, selected, omega_);
  return {weights, log_q.exp(), selected};
}

double remix_omega(const AdapterConfig& config, int64_t rank) {
  if (config.composed()) return 1.0 / static_cast<double>(config.top_k);
  const double kr = static_cast<double>(config.top_k * rank);
  return config.omega_alpha / (config.omega_type == OmegaType::kLora ? kr : std::sqrt(kr));
}

}  // namespace remora
