// RMSNorm outside decode steps, with a hand-written backward (one fused pass a row for bf16 on the CPU).
#include "model/rms_norm_autograd.h"

#include <torch/autograd.h>

#include "model/rms_norm_rows.h"

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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
    const bool rows_apply = rms_norm_rows_grad_applies(x, weight, grad);
    at::Tensor x32;  // only where an eager step reads it
    if (ctx->needs_input_grad(1) || (ctx->needs_input_grad(0) && !rows_apply)) x32 = x.to(at::kFloat);
    at::Tensor grad_weight;
    if (ctx->needs_input_grad(1)) {
      const at::Tensor normed = (x32 * inverse_rms).to(x.scalar_type());
      grad_weight = (grad * normed).sum_to_size(weight.sizes()).to(weight.scalar_type());
    }
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0) && rows_apply) {
      grad_x = rms_norm_rows_grad_x(x, weight, grad, inverse_rms);
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
