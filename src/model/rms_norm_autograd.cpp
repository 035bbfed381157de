// RMSNorm outside decode steps, with a hand-written backward (one fused pass a row for bf16 on the CPU).
#include "model/rms_norm_autograd.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <vector>

#include "core/vector_math.h"

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// d x of one bf16 row, the steps of RmsNormFunction's eager backward below with their roundings:
// g = bf16(grad weight); s = sum(g x); d x = bf16(g r + (-0.5 s r^3 / D) 2 x), r the inverse RMS.
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

bool fused_backward_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad) {
  return x.device().is_cpu() && x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 &&
         grad.scalar_type() == at::kBFloat16 && x.is_contiguous() && weight.is_contiguous() &&
         weight.numel() == x.size(-1) && grad.sizes() == x.sizes();
}

at::Tensor fused_grad_x(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad,
                        const at::Tensor& inverse_rms) {
  const at::Tensor upstream = grad.contiguous(), inverse = inverse_rms.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  const int64_t width = x.size(-1), rows = x.numel() / width;
  const uint16_t *x_bits = bf16_bits(x), *grad_bits = bf16_bits(upstream), *weight_bits = bf16_bits(weight);
  const float* inverse_rms_data = inverse.data_ptr<float>();
  uint16_t* out = mutable_bf16_bits(grad_x);
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / width), [&](int64_t begin, int64_t end) {
    std::vector<float> scaled_grad(width);
    for (int64_t r = begin; r < end; ++r) {
      rms_norm_backward_row(x_bits + r * width, grad_bits + r * width, weight_bits, inverse_rms_data[r], width,
                            scaled_grad.data(), out + r * width);
    }
  });
  return grad_x;
}

struct RmsNormFunction : torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    const at::Tensor x32 = x.to(at::kFloat);
    at::Tensor inverse_rms = at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);  // [..., 1] fp32
    at::Tensor y = weight * (x32 * inverse_rms).to(x.scalar_type());
    ctx->save_for_backward({x, weight, inverse_rms});
    return y;
  }

  // The chain rule of the eager formula, step by step, each in the dtype autograd would use.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &inverse_rms = saved[2];
    const at::Tensor& grad = grads[0];
    const at::Tensor x32 = x.to(at::kFloat);
    at::Tensor grad_weight;
    if (ctx->needs_input_grad(1)) {
      const at::Tensor normed = (x32 * inverse_rms).to(x.scalar_type());
      grad_weight = (grad * normed).sum_to_size(weight.sizes()).to(weight.scalar_type());
    }
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0) && fused_backward_applies(x, weight, grad)) {
      grad_x = fused_grad_x(x, weight, grad, inverse_rms);
    } else if (ctx->needs_input_grad(0)) {
      // The gradient as the cast to x's dtype receives it, then passes it on in fp32.
      const at::Tensor grad_normed = (grad * weight).to(x.scalar_type()).to(at::kFloat);
      const at::Tensor grad_inverse_rms = (grad_normed * x32).sum(-1, /*keepdim=*/true);
      const at::Tensor grad_mean = -0.5 * grad_inverse_rms * inverse_rms.pow(3);  // d rsqrt(s) / ds
      const at::Tensor grad_square = grad_mean / static_cast<double>(x.size(-1));  // through the mean
      grad_x = (grad_normed * inverse_rms + grad_square * (2 * x32)).to(x.scalar_type());
    }
    return {grad_x, grad_weight, at::Tensor()};
  }
};

}  // namespace

at::Tensor rms_norm_with_backward(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return RmsNormFunction::apply(x, weight, eps);
}

}  // namespace remora
