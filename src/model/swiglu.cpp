// SwiGLU's gating with a backward that recomputes silu(gate).
#include "model/swiglu.h"

#include <torch/autograd.h>

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SwigluFunction : torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return at::silu(gate) * up;
  }

  // What autograd runs for the eager form: MulBackward0 (grad * up, grad * silu(gate)), then
  // SiluBackward0 on the first.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gate = saved[0], &up = saved[1], &grad = grads[0];
    at::Tensor grad_gate, grad_up;
    if (ctx->needs_input_grad(0)) grad_gate = at::silu_backward(grad * up, gate);
    if (ctx->needs_input_grad(1)) grad_up = grad * at::silu(gate);
    return {grad_gate, grad_up};
  }
};

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  if (!at::GradMode::is_enabled() || (!gate.requires_grad() && !up.requires_grad())) return at::silu(gate) * up;
  return SwigluFunction::apply(gate, up);
}

}  // namespace remora
