// Shared construction of routers' weight matrices.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// P [experts, input] fp32 ~ N(0, std) (MixLoRA's router_init_range convention).
inline at::Tensor new_router_weight(int64_t experts, int64_t input_size, double std) {
  return at::empty({experts, input_size}, at::kFloat).normal_(0.0, std);
}

}  // namespace remora
