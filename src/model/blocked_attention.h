// Causal self-attention a block of queries at a time, with a hand-written backward: neither the
// [B, H, T, T] scores nor their fp32 softmax are kept for the backward (or ever formed whole).
#pragma once

#include <ATen/ATen.h>

namespace remora {

// softmax(q k^T / sqrt(Dh) + bias) v over positions without a cache, with the numerics of
// Attention's eager path (scores and bias in the input dtype, softmax in fp32, probabilities cast
// back before they mix the values).
//   q [B, H, T, Dh], k and v [B, Hkv, T, Dh] (H a multiple of Hkv), bias [B, 1, 1, T, T] (0 or a
//   large negative). Returns [B, T, H Dh]. Differentiable in q, k and v.
// Queries go `block` rows at a time and see only the keys the causal mask (and a sliding `window`,
// 0 for none) can let them see: about half the score FLOPs of full attention, transient memory of
// one block's scores, and the backward recomputes each block's softmax from q, k, v. A query that
// sees no key at all (a padding row) gets a uniform average over its block's key range instead of
// eager's over all T keys; its output is never used.
at::Tensor blocked_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& bias, int64_t window, int64_t block = 64);

}  // namespace remora
