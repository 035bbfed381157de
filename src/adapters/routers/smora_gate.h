// SMoRA's gate from its router's logits in one pass per token on the CPU, with a hand-written backward.
#pragma once

#include <ATen/ATen.h>

namespace remora {

struct SmoraGate {
  at::Tensor weights;   // [N, R] fp32: k t / sum(t) at the selected ranks, 0 elsewhere (differentiable in the logits)
  at::Tensor affinity;  // [N, R] fp32 s = sigmoid(logits), each score repeated over its `partition` ranks (no gradient)
  at::Tensor selected;  // [N, k] int64: the ranks of the k largest t = s + bias, largest first
};

// The official formula (sigmoid, repeat_interleave to ranks, + bias, top k, k t / sum t) for fp32
// logits [N, R / partition] and bias [R]. Ties go to the lower rank (at::topk leaves their order to
// its sort); a NaN score counts as the largest, as at::topk has it, so a NaN logit reaches the loss.
// Replaces about ten LibTorch ops a projection each way (`topk` alone took ~0.3 ms at 512 tokens).
SmoraGate smora_gate(const at::Tensor& logits, const at::Tensor& bias, int64_t k, int64_t partition);

// Whether smora_gate runs for these tensors (fp32 on the CPU); elsewhere the router runs the eager ops.
bool smora_gate_applies(const at::Tensor& logits, const at::Tensor& bias);

}  // namespace remora
