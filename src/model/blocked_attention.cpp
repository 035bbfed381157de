// Query-blocked causal attention: forward block by block, backward recomputing each block's softmax.
#include "model/blocked_attention.h"

#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/vector_math.h"

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One query block: rows [start, start + rows) and the keys [key_start, key_start + keys) any of
// them may see.
struct QueryBlock {
  int64_t start, rows, key_start, keys;
};

std::vector<QueryBlock> query_blocks(int64_t T, int64_t window, int64_t block) {
  std::vector<QueryBlock> blocks;
  for (int64_t start = 0; start < T; start += block) {
    const int64_t rows = std::min(block, T - start);
    // Causal: no key after the block's last query; a window: none before its first query's window.
    const int64_t key_start = window > 0 ? std::max<int64_t>(0, start - window + 1) : 0;
    blocks.push_back({start, rows, key_start, start + rows - key_start});
  }
  return blocks;
}

// The shapes every block shares.
struct Heads {
  int64_t B, kv_heads, G, T, Dh;
  double scale;
};

// The block's queries stacked as [B, Hkv, G rows, Dh] (the G query heads sharing a KV head are one
// batched matmul, as in Attention::attention_scores).
at::Tensor block_queries(const at::Tensor& grouped_q, const Heads& h, const QueryBlock& b) {
  return grouped_q.narrow(3, b.start, b.rows).reshape({h.B, h.kv_heads, h.G * b.rows, h.Dh});
}

// q k^T of one block, [B, Hkv, G rows, keys].
at::Tensor block_scores(const at::Tensor& queries, const at::Tensor& k, const QueryBlock& b) {
  return at::matmul(queries, k.narrow(2, b.key_start, b.keys).transpose(-1, -2));
}

// fp32 softmax(scores scale + bias) of one block [B, Hkv, G rows, keys], as the eager path computes it.
at::Tensor block_probabilities(const at::Tensor& scores, const at::Tensor& bias, const Heads& h,
                               const QueryBlock& b) {
  const at::Tensor block_bias = bias.narrow(3, b.start, b.rows).narrow(4, b.key_start, b.keys);
  return at::softmax(at::add(block_bias, scores.view({h.B, h.kv_heads, h.G, b.rows, b.keys}), h.scale), -1,
                     at::kFloat)
      .view({h.B, h.kv_heads, h.G * b.rows, b.keys});
}

// ---- bf16 on the CPU: the block's softmax (and its backward) row by row, without LibTorch ops ----

// probs = softmax(bf16(bias + scale scores)) of one row in fp32, and its bf16 copy: the eager ops'
// roundings (the biased scores in bf16), their max / exp(x - max) / times 1 / sum steps, row by row.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void softmax_row(
    const uint16_t* scores, const uint16_t* bias, float scale, int64_t keys, float* probs, uint16_t* typed) {
  for (int64_t j = 0; j < keys; ++j) {
    probs[j] = round_through_bf16(bf16_to_float(bias[j]) + scale * bf16_to_float(scores[j]));
  }
  const float max = max_of(probs, keys);
  const float inverse = 1.0f / exp_shifted_in_place(probs, keys, max);
  for (int64_t j = 0; j < keys; ++j) {
    probs[j] *= inverse;
    typed[j] = float_to_bf16(probs[j]);
  }
}

// d scores = bf16(probs (d probs - sum(d probs probs)) scale): _softmax_backward_data, then the
// scale, then the cast, as the eager backward runs them.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void softmax_backward_row(
    const float* probs, const uint16_t* d_probs, float scale, int64_t keys, uint16_t* d_scores) {
  float lane_sum[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= keys; j += kLanes) {
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      lane_sum[lane] += bf16_to_float(d_probs[j + lane]) * probs[j + lane];
    }
  }
  for (; j < keys; ++j) lane_sum[0] += bf16_to_float(d_probs[j]) * probs[j];
  const float dot = sum_lanes(lane_sum);
  for (j = 0; j < keys; ++j) d_scores[j] = float_to_bf16(probs[j] * (bf16_to_float(d_probs[j]) - dot) * scale);
}

// The kernels read contiguous bf16 scores and one [T, T] bias per row of the batch.
bool fused_softmax_applies(const at::Tensor& scores, const at::Tensor& bias) {
  return scores.device().is_cpu() && scores.scalar_type() == at::kBFloat16 && scores.is_contiguous() &&
         bias.scalar_type() == at::kBFloat16 && bias.is_contiguous() && bias.size(0) == scores.size(0) &&
         bias.numel() == bias.size(0) * bias.size(-1) * bias.size(-1);
}

// Runs `row(scores row, bias row, scratch, index)` over the block's rows in parallel; scratch holds
// `keys` floats per thread.
template <typename Row>
void for_each_block_row(const at::Tensor& scores, const at::Tensor& bias, const Heads& h, const QueryBlock& b,
                        Row row) {
  const int64_t rows = scores.numel() / b.keys, rows_per_batch = rows / h.B, T = bias.size(-1);
  const uint16_t* score_bits = bf16_bits(scores);
  const uint16_t* bias_bits = bf16_bits(bias);
  parallel_for(0, rows, std::max<int64_t>(1, 32768 / b.keys), [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(b.keys);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t batch = r / rows_per_batch, query = b.start + r % b.rows;
      row(score_bits + r * b.keys, bias_bits + (batch * T + query) * T + b.key_start, scratch.data(), r);
    }
  });
}

// bf16 probabilities of one block from its bf16 scores [B, Hkv, G rows, keys] (contiguous).
at::Tensor typed_block_probabilities(const at::Tensor& scores, const at::Tensor& bias, const Heads& h,
                                     const QueryBlock& b) {
  at::Tensor typed = at::empty_like(scores);
  uint16_t* out = mutable_bf16_bits(typed);
  for_each_block_row(scores, bias, h, b, [&](const uint16_t* s, const uint16_t* bias_row, float* probs, int64_t r) {
    softmax_row(s, bias_row, static_cast<float>(h.scale), b.keys, probs, out + r * b.keys);
  });
  return typed;
}

// The bf16 probabilities (for d v) and the bf16 score gradients of one block, recomputing each row's
// fp32 softmax next to its backward.
std::pair<at::Tensor, at::Tensor> typed_block_backward(const at::Tensor& scores, const at::Tensor& bias,
                                                       const at::Tensor& d_probs, const Heads& h, const QueryBlock& b) {
  at::Tensor typed = at::empty_like(scores), d_scores = at::empty_like(scores);
  uint16_t *typed_out = mutable_bf16_bits(typed), *d_out = mutable_bf16_bits(d_scores);
  const uint16_t* d_probs_bits = bf16_bits(d_probs);
  const float scale = static_cast<float>(h.scale);
  for_each_block_row(scores, bias, h, b, [&](const uint16_t* s, const uint16_t* bias_row, float* probs, int64_t r) {
    softmax_row(s, bias_row, scale, b.keys, probs, typed_out + r * b.keys);
    softmax_backward_row(probs, d_probs_bits + r * b.keys, scale, b.keys, d_out + r * b.keys);
  });
  return {typed, d_scores};
}

struct BlockedAttention : torch::autograd::Function<BlockedAttention> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& bias, int64_t window, int64_t block) {
    const at::Tensor grouped_q = q.reshape({q.size(0), k.size(1), q.size(1) / k.size(1), q.size(2), q.size(3)});
    const Heads h = heads_of(grouped_q);
    const at::Tensor typed_bias = bias.to(q.scalar_type()).contiguous();
    at::Tensor out = at::empty({h.B, h.kv_heads, h.G, h.T, h.Dh}, q.options());
    for (const QueryBlock& b : query_blocks(h.T, window, block)) {
      const at::Tensor scores = block_scores(block_queries(grouped_q, h, b), k, b);
      const at::Tensor probs = fused_softmax_applies(scores, typed_bias)
                                   ? typed_block_probabilities(scores, typed_bias, h, b)
                                   : block_probabilities(scores, typed_bias, h, b).to(v.scalar_type());
      out.narrow(3, b.start, b.rows)
          .copy_(at::matmul(probs, v.narrow(2, b.key_start, b.keys)).view({h.B, h.kv_heads, h.G, b.rows, h.Dh}));
    }
    ctx->save_for_backward({grouped_q, k, v, typed_bias});
    ctx->saved_data["window"] = window;
    ctx->saved_data["block"] = block;
    return out.view({h.B, h.kv_heads * h.G, h.T, h.Dh}).transpose(1, 2).reshape({h.B, h.T, -1});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &grouped_q = saved[0], &k = saved[1], &v = saved[2], &bias = saved[3];
    const Heads h = heads_of(grouped_q);
    const auto dtype = grouped_q.scalar_type();
    // d out [B, T, H Dh] as [B, Hkv, G, T, Dh], the layout of the grouped queries.
    const at::Tensor d_out = grads[0].reshape({h.B, h.T, h.kv_heads, h.G, h.Dh}).permute({0, 2, 3, 1, 4});
    const bool q_grad = ctx->needs_input_grad(0);
    at::Tensor d_q = q_grad ? at::empty_like(grouped_q, at::MemoryFormat::Contiguous) : at::Tensor();
    // Key and value gradients collect one term per query block: summed in fp32, rounded once.
    at::Tensor d_k = at::zeros(k.sizes(), k.options().dtype(at::kFloat));
    at::Tensor d_v = at::zeros(v.sizes(), v.options().dtype(at::kFloat));
    for (const QueryBlock& b : query_blocks(h.T, ctx->saved_data["window"].toInt(), ctx->saved_data["block"].toInt())) {
      const at::Tensor queries = block_queries(grouped_q, h, b);
      const at::Tensor scores = block_scores(queries, k, b);
      const at::Tensor d_block = d_out.narrow(3, b.start, b.rows).reshape({h.B, h.kv_heads, h.G * b.rows, h.Dh});
      const at::Tensor keys = k.narrow(2, b.key_start, b.keys), values = v.narrow(2, b.key_start, b.keys);
      const at::Tensor d_probs = at::matmul(d_block, values.transpose(-1, -2));
      at::Tensor typed_probs, d_scores;
      if (fused_softmax_applies(scores, bias)) {
        std::tie(typed_probs, d_scores) = typed_block_backward(scores, bias, d_probs.contiguous(), h, b);
      } else {
        const at::Tensor probs = block_probabilities(scores, bias, h, b);
        typed_probs = probs.to(dtype);
        d_scores = at::_softmax_backward_data(d_probs.to(at::kFloat), probs, -1, at::kFloat).mul_(h.scale).to(dtype);
      }
      d_v.narrow(2, b.key_start, b.keys).add_(at::matmul(typed_probs.transpose(-1, -2), d_block));
      if (q_grad) {
        d_q.narrow(3, b.start, b.rows).copy_(at::matmul(d_scores, keys).view({h.B, h.kv_heads, h.G, b.rows, h.Dh}));
      }
      d_k.narrow(2, b.key_start, b.keys).add_(at::matmul(d_scores.transpose(-1, -2), queries));
    }
    return {q_grad ? d_q.view({h.B, h.kv_heads * h.G, h.T, h.Dh}) : at::Tensor(), d_k.to(dtype), d_v.to(dtype),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }

  // From the grouped queries [B, Hkv, G, T, Dh].
  static Heads heads_of(const at::Tensor& grouped_q) {
    const int64_t Dh = grouped_q.size(4);
    return {grouped_q.size(0), grouped_q.size(1), grouped_q.size(2), grouped_q.size(3), Dh,
            1.0 / std::sqrt(static_cast<double>(Dh))};
  }
};

}  // namespace

at::Tensor blocked_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& bias, int64_t window, int64_t block) {
  REMORA_CHECK(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() && q.size(2) == k.size(2) &&
                   q.size(1) % k.size(1) == 0 && block > 0,
               "blocked attention: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes(), ", block ", block);
  return BlockedAttention::apply(q, k, v, bias, window, block);
}

}  // namespace remora
