// Block-level routing decisions.
#include "adapters/block_routing.h"

#include "core/error.h"

namespace remora {

BlockRouting::BlockRouting(std::shared_ptr<Router> router, RoutingGranularity granularity,
                           RoutingState* state, std::string path)
    : router(std::move(router)), granularity_(granularity), state_(state), path_(std::move(path)) {}

void BlockRouting::on_block_input(const at::Tensor& x, const ForwardContext& context) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor mask = context.token_mask;  // [B, T]
  if (granularity_ == RoutingGranularity::kToken) {
    at::Tensor valid = mask.reshape({B * T});
    Gate gate = router->route(x.reshape({B * T, -1}), valid, B, *state_);
    if (state_->capture) state_->capture->add(path_, gate, valid);
    gate_ = gate.weights;
    return;
  }
  if (context.past == 0 || !sequence_gate_.defined()) {
    mask = context.routing_mask;
    at::Tensor weights = mask.to(at::kFloat).unsqueeze(-1);  // [B, T, 1]
    at::Tensor mean = (x.to(at::kFloat) * weights).sum(1) / weights.sum(1).clamp_min(1);  // [B, D]
    at::Tensor valid = mask.any(1);
    Gate gate = router->route(mean, valid, B, *state_);
    if (state_->capture) state_->capture->add(path_, gate, valid);
    sequence_gate_ = gate.weights;
  }
  gate_ = sequence_gate_.unsqueeze(1).expand({B, T, -1}).reshape({B * T, -1});
}

const at::Tensor& BlockRouting::gate() const {
  REMORA_CHECK(gate_.defined(), path_, ": no routing decision yet (block input hook not run)");
  return gate_;
}

}  // namespace remora
