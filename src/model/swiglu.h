// SwiGLU's gating, silu(gate) * up, with a backward that keeps only its two inputs.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// at::silu(gate) * up with the eager form's roundings, forward and backward. Why: through autograd
// the eager form also keeps silu(gate) for the product's backward, a third [tokens, intermediate]
// tensor per layer (per routed sample with ReMix); this recomputes it. Contiguous bf16 CPU inputs
// take one fused pass each way, in fp32 with one rounding wherever eager's ops round (its exp is
// vector_exp, so a result can differ from eager's by one bf16 step where the two exps straddle a
// rounding boundary); anything else runs the eager ops themselves, bit-identical to them.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

}  // namespace remora
