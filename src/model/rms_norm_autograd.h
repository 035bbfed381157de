// RMSNorm outside decode steps, with a hand-written backward that keeps only the input and one fp32 scale per row.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// weight * (x32 * rsqrt(mean(x32^2) + eps)).to(x's dtype), x32 = x in fp32: the eager formula and
// roundings (transformers' LlamaRMSNorm). Differentiable in x and weight. Why: through autograd the
// eager formula keeps an fp32 copy of x and the normalised bf16 rows for the backward (6 bytes per
// element in a bf16 model); this keeps x itself and rsqrt per row, and recomputes the rest.
at::Tensor rms_norm_with_backward(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace remora
