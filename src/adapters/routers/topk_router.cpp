// MixLoRA-style router: softmax, top-k, renormalise, Switch-style balance loss.
#include "adapters/routers/router_init.h"
#include "adapters/routers/router_logits.h"
#include "adapters/routers/routers.h"

namespace remora {

TopkRouter::TopkRouter(int64_t input_size, int64_t experts, int64_t k, double balance_coef,
                       double init_std, BalanceLossScope scope)
    : k_(k), balance_coef_(balance_coef), scope_(scope) {
  weight = register_parameter("weight", new_router_weight(experts, input_size, init_std));
}

Gate TopkRouter::route(const at::Tensor& x, const at::Tensor& valid, int64_t, RoutingState& state) {
  at::Tensor probs = at::softmax(router_logits(x, weight), -1);  // [N, n]
  auto [top, selected] = probs.topk(k_, -1);                      // [N, k]
  at::Tensor weights = at::zeros_like(probs).scatter(-1, selected, top / top.sum(-1, true));
  if (state.training && balance_coef_ > 0) {
    at::Tensor mask = valid.to(probs.scalar_type()).unsqueeze(-1);  // [N, 1]
    at::Tensor tokens = mask.sum();
    at::Tensor chosen = (at::zeros_like(probs).scatter(-1, selected, 1.0) * mask).sum(0).detach();  // [n]
    at::Tensor prob_sum = (probs * mask).sum(0);                                                  // [n]
    if (scope_ == BalanceLossScope::kPooled) {
      state.add_pooled_balance(balance_coef_, chosen, prob_sum, tokens);
    } else {
      state.add_aux_loss(PooledBalance{balance_coef_, chosen, prob_sum, tokens}.loss(state));  // this layer alone
    }
  }
  return {weights, probs, selected};
}

}  // namespace remora
