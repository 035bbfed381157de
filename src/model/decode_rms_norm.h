// RMSNorm of one-position decode steps in one pass over each row, with the eager path's roundings.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// True for the steps decode_linear serves (x [..., 1, size] bf16 on the CPU, no gradient needed)
// with a bf16 weight [size]. Why: the eager RMSNorm is eight ATen calls (casts, pow, mean, add,
// rsqrt, two products), each costing more than the arithmetic on one row of a few hundred values.
bool decode_rms_norm_applies(const at::Tensor& x, const at::Tensor& weight);

// weight * bf16(x * rsqrt(mean(x^2) + eps)), x in fp32: the eager path's formula and roundings; only
// the order of the fp32 sum of squares differs. Each row is normalised on its own.
at::Tensor decode_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace remora
