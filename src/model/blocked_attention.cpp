// Query-blocked causal attention: forward block by block, backward recomputing each block's softmax.
#include "model/blocked_attention.h"

#include <torch/autograd.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

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

// fp32 softmax(q k^T scale + bias) of one block [B, Hkv, G rows, keys], as the eager path computes it.
at::Tensor block_probabilities(const at::Tensor& queries, const at::Tensor& k, const at::Tensor& bias,
                               const Heads& h, const QueryBlock& b) {
  at::Tensor scores = at::matmul(queries, k.narrow(2, b.key_start, b.keys).transpose(-1, -2))
                          .view({h.B, h.kv_heads, h.G, b.rows, b.keys});
  const at::Tensor block_bias = bias.narrow(3, b.start, b.rows).narrow(4, b.key_start, b.keys);
  return at::softmax(at::add(block_bias, scores, h.scale), -1, at::kFloat)
      .view({h.B, h.kv_heads, h.G * b.rows, b.keys});
}

struct BlockedAttention : torch::autograd::Function<BlockedAttention> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& bias, int64_t window, int64_t block) {
    const at::Tensor grouped_q = q.reshape({q.size(0), k.size(1), q.size(1) / k.size(1), q.size(2), q.size(3)});
    const Heads h = heads_of(grouped_q);
    const at::Tensor typed_bias = bias.to(q.scalar_type());
    at::Tensor out = at::empty({h.B, h.kv_heads, h.G, h.T, h.Dh}, q.options());
    for (const QueryBlock& b : query_blocks(h.T, window, block)) {
      const at::Tensor probs = block_probabilities(block_queries(grouped_q, h, b), k, typed_bias, h, b);
      out.narrow(3, b.start, b.rows)
          .copy_(at::matmul(probs.to(v.scalar_type()), v.narrow(2, b.key_start, b.keys))
                     .view({h.B, h.kv_heads, h.G, b.rows, h.Dh}));
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
      const at::Tensor probs = block_probabilities(queries, k, bias, h, b);
      const at::Tensor typed_probs = probs.to(dtype);
      const at::Tensor d_block = d_out.narrow(3, b.start, b.rows).reshape({h.B, h.kv_heads, h.G * b.rows, h.Dh});
      const at::Tensor keys = k.narrow(2, b.key_start, b.keys), values = v.narrow(2, b.key_start, b.keys);
      d_v.narrow(2, b.key_start, b.keys).add_(at::matmul(typed_probs.transpose(-1, -2), d_block));
      const at::Tensor d_probs = at::matmul(d_block, values.transpose(-1, -2)).to(at::kFloat);
      const at::Tensor d_scores =
          at::_softmax_backward_data(d_probs, probs, -1, at::kFloat).mul_(h.scale).to(dtype);
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
