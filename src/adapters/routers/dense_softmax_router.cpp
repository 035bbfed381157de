// MoLoRA / HydraLoRA router: a dense softmax over experts.
#include "adapters/routers/router_init.h"
#include "adapters/routers/router_logits.h"
#include "adapters/routers/routers.h"

namespace remora {

DenseSoftmaxRouter::DenseSoftmaxRouter(int64_t input_size, int64_t experts, double init_std) {
  weight = register_parameter("weight", new_router_weight(experts, input_size, init_std));
}

Gate DenseSoftmaxRouter::route(const at::Tensor& x, const at::Tensor&, int64_t, RoutingState&) {
  at::Tensor probs = at::softmax(router_logits(x, weight), -1);
  return {probs, probs, at::Tensor()};
}

}  // namespace remora
