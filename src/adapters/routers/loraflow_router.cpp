// LoRA-Flow's fusion gate: per-token weights over existing LoRAs from the layer's input.
#include "adapters/routers/router_logits.h"
#include "adapters/routers/routers.h"

namespace remora {

LoraFlowRouter::LoraFlowRouter(int64_t input_size, int64_t experts) {
  weight = register_parameter("weight", at::zeros({experts, input_size}, at::kFloat));
  bias = register_parameter("bias", at::zeros({experts}, at::kFloat));
}

void LoraFlowRouter::initialize(double, at::Generator&) {
  // The official code starts W_gate at zero; its bias favours the task LoRA of its two ([-0.5, 0.5]),
  // which has no counterpart for n unnamed LoRAs, so b starts at zero: every LoRA at weight 1/n.
  at::NoGradGuard no_grad;
  weight.zero_();
  bias.zero_();
}

Gate LoraFlowRouter::route(const at::Tensor& x, const at::Tensor&, int64_t, RoutingState&) {
  at::Tensor probs = at::softmax(router_logits(x, weight), -1);  // [N, n]
  // The bias is added after the softmax and the weights are not renormalised (the paper's gate).
  return {probs + bias, probs, at::Tensor()};
}

}  // namespace remora
