// Attention of one-position decode steps over the KV cache, in one pass per query head.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace remora {

// True for a cached decode step the kernel serves: q [B, H, 1, Dh] and the cache's keys [B, Hkv, S, Dh]
// bf16 on the CPU, the keys' last dimension contiguous, no gradient needed. Why: the eager path is two
// batched matmuls, a softmax and half a dozen casts and reshapes per layer, and LibTorch 1.13's bf16
// `bmm` of one query row costs ~50 µs per call whatever its size, as much as a layer's projections.
bool decode_attention_applies(const at::Tensor& q, const at::Tensor& keys);

// softmax(scale q k^T + bias) v for each query head over its KV head's positions (grouped-query:
// head h reads KV head h / (H / Hkv)), returned as [B, 1, H * Dh]. keys and values [B, Hkv, S, Dh]
// (views of the cache), bias [B, 1, 1, 1, S] bf16 (the additive mask: 0 visible, very negative hidden).
// Scores, softmax and the weighted sum of values stay in fp32 and the result is rounded to bf16 once
// (the eager path rounds the scores and the probabilities to bf16 as well). Each row reads only its
// own positions from row_starts[b] on (all of them when row_starts is empty), so a row's bits never
// depend on the rows decoded beside it.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                            const at::Tensor& bias, const std::vector<int64_t>& row_starts, double scale);

}  // namespace remora
