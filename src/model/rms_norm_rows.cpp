// RMSNorm over bf16 rows on the CPU, one pass a row: the forward of decode steps, and x's gradient.
#include "model/rms_norm_rows.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/vector_math.h"

namespace remora {
namespace {

// Rows per parallel task: ~16K values, so that a decode step's few rows stay on the calling thread.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

// One row of y = bf16(w * bf16(x * r)), r = 1 / sqrt(sum(x^2) / D + eps) in fp32.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void rms_norm_forward_row(
    const uint16_t* x, const uint16_t* weight, int64_t width, float eps, uint16_t* y) {
  float lane_sum[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= width; j += kLanes) {
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      const float v = bf16_to_float(x[j + lane]);
      lane_sum[lane] += v * v;
    }
  }
  for (; j < width; ++j) lane_sum[j % kLanes] += bf16_to_float(x[j]) * bf16_to_float(x[j]);
  // The lanes added in order, as the decode steps of the recorded figures did (see the header).
  float sum = 0;
  for (float lane : lane_sum) sum += lane;
  // at::rsqrt is 1 / sqrt on the CPU, and mean is the sum divided by the count.
  const float inverse_rms = 1.0f / std::sqrt(sum / static_cast<float>(width) + eps);
  for (j = 0; j < width; ++j) {
    y[j] = float_to_bf16(bf16_to_float(weight[j]) * round_through_bf16(bf16_to_float(x[j]) * inverse_rms));
  }
}

// One row of d x, the steps of the eager backward with their roundings (see the header).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void rms_norm_backward_row(
    const uint16_t* x, const uint16_t* grad, const uint16_t* weight, float inverse_rms, int64_t width,
    float* scaled_grad, uint16_t* grad_x) {
  float lane_sum[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= width; j += kLanes) {
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      scaled_grad[j + lane] = round_through_bf16(bf16_to_float(grad[j + lane]) * bf16_to_float(weight[j + lane]));
      lane_sum[lane] += scaled_grad[j + lane] * bf16_to_float(x[j + lane]);
    }
  }
  for (; j < width; ++j) {
    scaled_grad[j] = round_through_bf16(bf16_to_float(grad[j]) * bf16_to_float(weight[j]));
    lane_sum[0] += scaled_grad[j] * bf16_to_float(x[j]);
  }
  const float grad_square =
      -0.5f * sum_lanes(lane_sum) * (inverse_rms * inverse_rms * inverse_rms) / static_cast<float>(width);
  for (j = 0; j < width; ++j) {
    grad_x[j] = float_to_bf16(scaled_grad[j] * inverse_rms + grad_square * (2.0f * bf16_to_float(x[j])));
  }
}

}  // namespace

bool rms_norm_rows_apply(const at::Tensor& x, const at::Tensor& weight) {
  return x.device().is_cpu() && weight.device().is_cpu() && x.scalar_type() == at::kBFloat16 &&
         weight.scalar_type() == at::kBFloat16 && x.dim() >= 1 && weight.dim() == 1 &&
         weight.size(0) == x.size(-1);
}

at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(rms_norm_rows_apply(x, weight), "rms_norm_rows: expected bf16 x [..., ", weight.size(0),
              "] on the CPU and a bf16 weight of that size, got x ", x.sizes(), " ", x.scalar_type());
  const int64_t width = x.size(-1), rows = width == 0 ? 0 : x.numel() / width;
  const at::Tensor in = x.contiguous(), w = weight.contiguous();
  at::Tensor y = at::empty_like(in);
  const uint16_t *x_bits = bf16_bits(in), *weight_bits = bf16_bits(w);
  uint16_t* out = mutable_bf16_bits(y);
  parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      rms_norm_forward_row(x_bits + r * width, weight_bits, width, static_cast<float>(eps), out + r * width);
    }
  });
  return y;
}

bool rms_norm_rows_grad_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad) {
  return rms_norm_rows_apply(x, weight) && grad.scalar_type() == at::kBFloat16 && x.is_contiguous() &&
         weight.is_contiguous() && grad.sizes() == x.sizes();
}

at::Tensor rms_norm_rows_grad_x(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad,
                                const at::Tensor& inverse_rms) {
  TORCH_CHECK(rms_norm_rows_grad_applies(x, weight, grad), "rms_norm_rows_grad_x: expected contiguous bf16 x ",
              "and weight on the CPU and a bf16 gradient of x's shape");
  const at::Tensor upstream = grad.contiguous(), inverse = inverse_rms.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  const int64_t width = x.size(-1), rows = width == 0 ? 0 : x.numel() / width;
  const uint16_t *x_bits = bf16_bits(x), *grad_bits = bf16_bits(upstream), *weight_bits = bf16_bits(weight);
  const float* inverse_rms_data = inverse.data_ptr<float>();
  uint16_t* out = mutable_bf16_bits(grad_x);
  parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
    std::vector<float> scaled_grad(width);
    for (int64_t r = begin; r < end; ++r) {
      rms_norm_backward_row(x_bits + r * width, grad_bits + r * width, weight_bits, inverse_rms_data[r], width,
                            scaled_grad.data(), out + r * width);
    }
  });
  return grad_x;
}

}  // namespace remora
