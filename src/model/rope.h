// Rotary position embeddings in Hugging Face's rotate_half layout, with linear and llama3 scaling.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/config.h"

namespace remora {

// Inverse frequencies [Dh/2], fp32, after rope_scaling: 1 / theta^(2i/Dh), rewritten per scaling type.
at::Tensor rope_inverse_frequencies(const ModelConfig& config);

// cos and sin tables [B, T, Dh] in fp32 for positions [B, T] (int64).
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& inverse_frequencies,
                                              const at::Tensor& positions);

// x [B, H, T, Dh] rotated by the tables (broadcast over heads), in x's dtype: x*cos + rotate_half(x)*sin.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace remora
