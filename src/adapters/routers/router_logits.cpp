// Routers' logits in fp32 with a backward that recasts the activations instead of keeping an fp32 copy.
#include "adapters/routers/router_logits.h"

#include <torch/autograd.h>

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RouterLogits : torch::autograd::Function<RouterLogits> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return at::linear(x.to(weight.scalar_type()), weight);
  }

  // at::linear's two-dimensional backward, the same GEMM calls as autograd's: dx = dy W, dW = dy^T x, x
  // cast as the forward did. (x^T dy transposed holds the same numbers but not always the same bits:
  // OpenBLAS sums the two in different orders on some CPUs.)
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1];
    const at::Tensor& grad = grads[0];
    at::Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(0)) grad_x = grad.mm(weight).to(x.scalar_type());
    if (ctx->needs_input_grad(1)) grad_weight = grad.t().mm(x.to(weight.scalar_type()));
    return {grad_x, grad_weight};
  }
};

}  // namespace

at::Tensor router_logits(const at::Tensor& x, const at::Tensor& weight) {
  if (x.dim() != 2 || !at::GradMode::is_enabled() || !weight.requires_grad()) {
    return at::linear(x.to(weight.scalar_type()), weight);  // nothing to keep for a backward
  }
  return RouterLogits::apply(x, weight);
}

}  // namespace remora
