// SwiGLU's gating, silu(gate) * up, with a backward that keeps only its two inputs.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// at::silu(gate) * up with the eager ops and roundings, forward and backward (bit-identical). Why:
// through autograd the eager form also keeps silu(gate) for the product's backward, a third
// [tokens, intermediate] tensor per layer (per routed sample with ReMix); this recomputes it.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

}  // namespace remora
