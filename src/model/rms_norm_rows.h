// RMSNorm over bf16 rows on the CPU, one pass a row: the forward of decode steps, and x's gradient.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// True for bf16 x [..., size] on the CPU with a bf16 weight [size]. Why: the eager RMSNorm is eight
// ATen calls (casts, pow, mean, add, rsqrt, two products), each a pass over the rows and most of them
// over an fp32 copy; a decode step's row is a few hundred values, where each call costs more than the
// arithmetic.
bool rms_norm_rows_apply(const at::Tensor& x, const at::Tensor& weight);

// weight * bf16(x * rsqrt(mean(x^2) + eps)), x in fp32: the eager formula and its roundings, only the
// order of the fp32 sum of squares differs (16 partial sums added in order), so a value can land one
// bf16 step away from the eager one. Each row is normalised on its own. Only decode steps use it
// (RMSNorm::forward). Training and scoring through it were 0.25 ms against 0.48-0.71 ms for the eager
// ops on a [2048, 512] batch (2 threads), but moved the demo's bf16 results (top-k from 13 to 9 of
// 24 exact answers), which the README and the studies record; so they keep the eager bits.
at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps);

// True when rms_norm_rows_grad_x serves x, weight and the gradient of y (bf16, contiguous x and weight).
bool rms_norm_rows_grad_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad);

// d loss / d x from d loss / d y and the forward's per-row scale, the chain rule of the eager formula
// with its roundings: g = bf16(grad weight), s = sum(g x), d x = bf16(g r + (-0.5 s r^3 / D) 2 x).
at::Tensor rms_norm_rows_grad_x(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad,
                                const at::Tensor& inverse_rms);

}  // namespace remora
