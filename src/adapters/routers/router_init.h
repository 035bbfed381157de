// Shared construction of routers' weight matrices.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// P [experts, input] fp32 ~ N(0, std) (MixLoRA's router_init_range convention).
inline at::Tensor new_router_weight(int64_t experts, int64_t input_size, double std) {
  return at::empty({experts, input_size}, at::kFloat).normal_(0.0, std);
}

// Router logits in fp32 whatever the activations' dtype.
inline at::Tensor router_logits(const at::Tensor& x, const at::Tensor& weight) {
  return at::linear(x.to(weight.scalar_type()), weight);
}

}  // namespace remora
