// Routers' logits in fp32 from activations in the model's dtype, keeping only those activations for the backward.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// x.to(fp32) W^T for x [N, d] (any dtype) and an fp32 router weight W [n, d]: at::linear's numbers in
// both directions. Why not at::linear itself: autograd would keep the fp32 copy of x for W's gradient,
// 4 bytes per activation per router (at ReMix's M = 4 that was a tenth of the step's peak memory),
// when x itself (bf16, kept anyway for the LoRA factors' gradients) can be cast again in the backward.
at::Tensor router_logits(const at::Tensor& x, const at::Tensor& weight);

}  // namespace remora
