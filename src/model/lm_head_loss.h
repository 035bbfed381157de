// Cross-entropy and target log-probabilities through the LM head, a chunk of rows at a time: full
// [tokens, vocab] fp32 logits (and their gradient) are never materialised.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// Per-token cross-entropy [N] fp32 of `targets` [N] under logits = hidden [N, D] x head^T, with the
// same numerics as CausalLM::logits followed by log_softmax (the GEMM in the head's dtype, the
// softmax in fp32). Differentiable in hidden and head. With a frozen head, the forward also forms
// d loss_i / d hidden_i (its rows are independent), so the backward is one scaling, not a second
// pass over the vocabulary.
at::Tensor token_cross_entropy(const at::Tensor& hidden, const at::Tensor& head, const at::Tensor& targets);

// Log-probability [N] (fp32) of each target and whether it is the argmax [N] (bool), no gradient.
std::pair<at::Tensor, at::Tensor> target_log_probs(const at::Tensor& hidden, const at::Tensor& head,
                                                   const at::Tensor& targets);

// Rows of [N, V] logits computed at once: at least 256, more while they stay under 2^20 logits.
int64_t lm_head_chunk_rows(int64_t vocab);

}  // namespace remora
