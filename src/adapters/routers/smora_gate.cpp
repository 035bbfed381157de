// SMoRA's gate from its router's logits in one pass per token on the CPU, with a hand-written backward.
#include "adapters/routers/smora_gate.h"

#include <torch/autograd.h>

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "core/vector_math.h"

namespace remora {
namespace {

// at::topk's order: larger first, NaN above everything.
inline bool ranks_above(float a, float b) { return a > b || (a != a && b == b); }

struct Shape {
  int64_t rows, groups, partition, k;
  int64_t ranks() const { return groups * partition; }
};

// One token: s = sigmoid(logits) [groups], its ranks' affinity [R], the k ranks of the largest
// s + bias (largest first; among equal scores the lower rank, which stays ahead of later ones) with
// their scores, and weights k t / sum t at those ranks. Compiled for AVX-512, AVX2 and the baseline
// (the sigmoids are most of the arithmetic).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void gate_row(
    const float* logits, const float* bias, const Shape& shape, float* sigmoid, float* affinity, float* weights,
    int64_t* selected, float* top) {
  for (int64_t g = 0; g < shape.groups; ++g) sigmoid[g] = 1.0f / (1.0f + vector_exp(-logits[g]));
  int64_t count = 0;
  for (int64_t g = 0, r = 0; g < shape.groups; ++g) {
    for (int64_t p = 0; p < shape.partition; ++p, ++r) affinity[r] = sigmoid[g];  // (no division per rank)
  }
  for (int64_t r = 0; r < shape.ranks(); ++r) weights[r] = 0.0f;
  for (int64_t r = 0; r < shape.ranks(); ++r) {
    const float score = affinity[r] + bias[r];
    if (count == shape.k && !ranks_above(score, top[shape.k - 1])) continue;
    int64_t at = count < shape.k ? count++ : shape.k - 1;  // full: the last one drops out
    for (; at > 0 && ranks_above(score, top[at - 1]); --at) {
      top[at] = top[at - 1];
      selected[at] = selected[at - 1];
    }
    top[at] = score;
    selected[at] = r;
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < shape.k; ++i) sum += top[i];
  for (int64_t i = 0; i < shape.k; ++i) weights[selected[i]] = static_cast<float>(shape.k) * top[i] / sum;
}

// d logits of one token from d weights, as autograd runs the eager ops backward: w = num / sum with
// num = k t gives d num = d w / sum and d sum = -sum_i d w_i num_i / sum^2; d t = k d num + d sum at
// the selected ranks; each rank's d t added into its group's score; times s (1 - s) for the sigmoid.
void gate_backward_row(const float* grad_weights, const float* sigmoid, const int64_t* selected, const float* top,
                       const Shape& shape, float* grad_logits) {
  const float k = static_cast<float>(shape.k);
  float sum = 0.0f;
  for (int64_t i = 0; i < shape.k; ++i) sum += top[i];
  float grad_sum = 0.0f;
  for (int64_t i = 0; i < shape.k; ++i) grad_sum += -grad_weights[selected[i]] * (k * top[i]) / (sum * sum);
  for (int64_t g = 0; g < shape.groups; ++g) grad_logits[g] = 0.0f;
  for (int64_t i = 0; i < shape.k; ++i) {
    grad_logits[selected[i] / shape.partition] += k * (grad_weights[selected[i]] / sum) + grad_sum;
  }
  for (int64_t g = 0; g < shape.groups; ++g) grad_logits[g] *= (1.0f - sigmoid[g]) * sigmoid[g];
}

constexpr int64_t kGrainScores = 16384;  // scores a thread takes at least

// The forward over every token; `sigmoid` [N, groups] and `top` [N, k] are what the backward reads.
struct GateForward {
  SmoraGate gate;
  at::Tensor sigmoid, top;
};
GateForward gate_forward(const at::Tensor& logits, const at::Tensor& bias, const Shape& shape) {
  const auto options = logits.options();
  GateForward out;
  out.sigmoid = at::empty({shape.rows, shape.groups}, options);
  out.top = at::empty({shape.rows, shape.k}, options);
  out.gate.affinity = at::empty({shape.rows, shape.ranks()}, options);
  out.gate.weights = at::empty({shape.rows, shape.ranks()}, options);
  out.gate.selected = at::empty({shape.rows, shape.k}, options.dtype(at::kLong));
  const float *l = logits.data_ptr<float>(), *b = bias.data_ptr<float>();
  float *s = out.sigmoid.data_ptr<float>(), *t = out.top.data_ptr<float>();
  float *a = out.gate.affinity.data_ptr<float>(), *w = out.gate.weights.data_ptr<float>();
  int64_t* sel = out.gate.selected.data_ptr<int64_t>();
  parallel_for(0, shape.rows, std::max<int64_t>(1, kGrainScores / shape.ranks()), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      gate_row(l + n * shape.groups, b, shape, s + n * shape.groups, a + n * shape.ranks(), w + n * shape.ranks(),
               sel + n * shape.k, t + n * shape.k);
    }
  });
  return out;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SmoraGateFunction : torch::autograd::Function<SmoraGateFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& bias, int64_t k,
                               int64_t partition) {
    const Shape shape{logits.size(0), logits.size(1), partition, k};
    GateForward out = gate_forward(logits, bias, shape);
    ctx->save_for_backward({out.sigmoid, out.gate.selected, out.top});
    ctx->saved_data["partition"] = partition;
    ctx->mark_non_differentiable({out.gate.affinity, out.gate.selected});
    ctx->set_materialize_grads(false);  // no zero-filled [N, R] gradients for the two outputs above
    return {out.gate.weights, out.gate.affinity, out.gate.selected};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &sigmoid = saved[0], &selected = saved[1], &top = saved[2];
    const Shape shape{sigmoid.size(0), sigmoid.size(1), ctx->saved_data["partition"].toInt(), selected.size(1)};
    const at::Tensor grad = grads[0].to(at::kFloat).contiguous();
    at::Tensor grad_logits = at::empty_like(sigmoid);
    const float *dw = grad.data_ptr<float>(), *s = sigmoid.data_ptr<float>(), *t = top.data_ptr<float>();
    const int64_t* sel = selected.data_ptr<int64_t>();
    float* dl = grad_logits.data_ptr<float>();
    parallel_for(0, shape.rows, std::max<int64_t>(1, kGrainScores / shape.ranks()), [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        gate_backward_row(dw + n * shape.ranks(), s + n * shape.groups, sel + n * shape.k, t + n * shape.k, shape,
                          dl + n * shape.groups);
      }
    });
    return {grad_logits, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool smora_gate_applies(const at::Tensor& logits, const at::Tensor& bias) {
  return logits.device().is_cpu() && logits.scalar_type() == at::kFloat && bias.device().is_cpu() &&
         bias.scalar_type() == at::kFloat;
}

SmoraGate smora_gate(const at::Tensor& logits, const at::Tensor& bias, int64_t k, int64_t partition) {
  REMORA_CHECK(logits.dim() == 2 && bias.dim() == 1 && partition > 0 && bias.size(0) == logits.size(1) * partition &&
                   k > 0 && k <= bias.size(0),
               "SMoRA gate: logits ", logits.sizes(), ", bias ", bias.sizes(), ", partition ", partition, " and k ",
               k, " do not fit together");
  const at::Tensor contiguous_logits = logits.contiguous(), contiguous_bias = bias.contiguous();
  if (!at::GradMode::is_enabled() || !logits.requires_grad()) {
    return gate_forward(contiguous_logits, contiguous_bias, {logits.size(0), logits.size(1), partition, k}).gate;
  }
  const variable_list out = SmoraGateFunction::apply(contiguous_logits, contiguous_bias, k, partition);
  return {out[0], out[1], out[2]};
}

}  // namespace remora
