// RMSNorm over bf16 rows on the CPU, one pass a row: the forward with its per-row scale, and x's gradient.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// True for bf16 x [..., size] on the CPU with a bf16 weight [size]. Why: the eager RMSNorm is eight
// ATen calls (casts, pow, mean, add, rsqrt, two products), each a pass over the rows and most of them
// over an fp32 copy; a decode step's row is a few hundred values, where each call costs more than the
// arithmetic, and a training step's [2048, 512] took 0.48-0.71 ms on 2 threads against 0.25 here.
bool rms_norm_rows_apply(const at::Tensor& x, const at::Tensor& weight);

// weight * bf16(x * rsqrt(mean(x^2) + eps)), x in fp32: the eager formula and its roundings, only the
// order of the fp32 sum of squares differs (so a value can land one bf16 step away). Each row is
// normalised on its own. With `inverse_rms`, also returns rsqrt(mean(x^2) + eps), fp32 [..., 1].
at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps,
                         at::Tensor* inverse_rms = nullptr);

// True when rms_norm_rows_grad_x serves x, weight and the gradient of y (bf16, contiguous x and weight).
bool rms_norm_rows_grad_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad);

// d loss / d x from d loss / d y and the forward's per-row scale, the chain rule of the eager formula
// with its roundings: g = bf16(grad weight), s = sum(g x), d x = bf16(g r + (-0.5 s r^3 / D) 2 x).
at::Tensor rms_norm_rows_grad_x(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad,
                                const at::Tensor& inverse_rms);

}  // namespace remora
