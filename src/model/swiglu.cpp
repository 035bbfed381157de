// SwiGLU's gating, fused into one pass over its inputs for bf16 on the CPU, with a recomputing backward.
#include "model/swiglu.h"

#include <torch/autograd.h>

#include "core/parallel.h"
#include "core/vector_math.h"

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kGrain = 16384;  // elements a thread takes at least

// silu in fp32 as the eager op writes it, x / (1 + e^-x).
inline float silu(float x) { return x / (1.0f + vector_exp(-x)); }

// out = bf16(bf16(silu(gate)) up): eager's two ops and their two roundings in one pass. Compiled for
// AVX-512, AVX2 and the baseline, one chosen when the program loads.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void gate_forward(
    const uint16_t* gate, const uint16_t* up, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    out[i] = float_to_bf16(round_through_bf16(silu(bf16_to_float(gate[i]))) * bf16_to_float(up[i]));
  }
}

// What autograd runs for the eager form, rounding where it does: d up = bf16(d out bf16(silu(gate))),
// d gate = silu_backward(bf16(d out up), gate) = t sigmoid (1 + gate (1 - sigmoid)).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void gate_backward(
    const uint16_t* gate, const uint16_t* up, const uint16_t* grad, uint16_t* grad_gate, uint16_t* grad_up,
    int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = bf16_to_float(gate[i]), u = bf16_to_float(up[i]), d = bf16_to_float(grad[i]);
    const float e = vector_exp(-g);
    const float sigmoid = 1.0f / (1.0f + e);
    grad_up[i] = float_to_bf16(d * round_through_bf16(g / (1.0f + e)));
    grad_gate[i] = float_to_bf16(round_through_bf16(d * u) * sigmoid * (1.0f + g * (1.0f - sigmoid)));
  }
}

bool fused_applies(const at::Tensor& gate, const at::Tensor& up) {
  return gate.device().is_cpu() && gate.scalar_type() == at::kBFloat16 && up.scalar_type() == at::kBFloat16 &&
         gate.sizes() == up.sizes() && gate.is_contiguous() && up.is_contiguous();
}

at::Tensor product(const at::Tensor& gate, const at::Tensor& up) {
  if (!fused_applies(gate, up)) return at::silu(gate) * up;
  at::Tensor out = at::empty_like(gate);
  parallel_for(0, gate.numel(), kGrain, [&](int64_t begin, int64_t end) {
    gate_forward(bf16_bits(gate) + begin, bf16_bits(up) + begin, mutable_bf16_bits(out) + begin, end - begin);
  });
  return out;
}

struct SwigluFunction : torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return product(gate, up);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gate = saved[0], &up = saved[1];
    const at::Tensor grad = grads[0].contiguous();
    const bool gate_trains = ctx->needs_input_grad(0), up_trains = ctx->needs_input_grad(1);
    if (fused_applies(gate, up) && grad.scalar_type() == at::kBFloat16) {
      at::Tensor grad_gate = at::empty_like(gate), grad_up = at::empty_like(up);
      parallel_for(0, gate.numel(), kGrain, [&](int64_t begin, int64_t end) {
        gate_backward(bf16_bits(gate) + begin, bf16_bits(up) + begin, bf16_bits(grad) + begin,
                      mutable_bf16_bits(grad_gate) + begin, mutable_bf16_bits(grad_up) + begin, end - begin);
      });
      return {gate_trains ? grad_gate : at::Tensor(), up_trains ? grad_up : at::Tensor()};
    }
    // Autograd's own ops for the eager form: MulBackward0 (grad * up, grad * silu(gate)), then
    // SiluBackward0 on the first.
    return {gate_trains ? at::silu_backward(grad * up, gate) : at::Tensor(),
            up_trains ? grad * at::silu(gate) : at::Tensor()};
  }
};

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  if (!at::GradMode::is_enabled() || (!gate.requires_grad() && !up.requires_grad())) return product(gate, up);
  return SwigluFunction::apply(gate, up);
}

}  // namespace remora
