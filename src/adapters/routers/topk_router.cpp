// MixLoRA-style router: softmax, top-k, renormalise, Switch-style balance loss.
#include "adapters/routers/router_init.h"
#include "adapters/routers/routers.h"

namespace remora {

TopkRouter::TopkRouter(int64_t input_size, int64_t experts, int64_t k, double balance_coef,
                       double init_std)
    : k_(k), balance_coef_(balance_coef) {
  weight = register_parameter("weight", new_router_weight(experts, input_size, init_std));
}

Gate TopkRouter::route(const at::Tensor& x, const at::Tensor& valid, int64_t, RoutingState& state) {
  at::Tensor probs = at::softmax(router_logits(x, weight), -1);  // [N, n]
  auto [top, selected] = probs.topk(k_, -1);                      // [N, k]
  at::Tensor weights = at::zeros_like(probs).scatter(-1, selected, top / top.sum(-1, true));
  if (state.training && balance_coef_ > 0) {
    const int64_t n = probs.size(-1);
    at::Tensor mask = valid.to(probs.scalar_type()).unsqueeze(-1);  // [N, 1]
    at::Tensor tokens = mask.sum().clamp_min(1);
    at::Tensor chosen = at::zeros_like(probs).scatter(-1, selected, 1.0);
    at::Tensor share = (chosen * mask).sum(0) / tokens;      // f_i
    at::Tensor mean_prob = (probs * mask).sum(0) / tokens;   // P̄_i
    state.add_aux_loss(balance_coef_ * n * (share.detach() * mean_prob).sum());
  }
  return {weights, probs, selected};
}

}  // namespace remora
