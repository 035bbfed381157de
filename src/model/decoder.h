// The Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3) as LibTorch modules with HF tensor names.
//
// Shapes: B batch, T new tokens, S attended positions (cached + new), D hidden, H / Hkv query / KV
// heads, G = H / Hkv, Dh head dim, F intermediate, V vocab.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/linear.h"

namespace remora {

// What every layer of one forward shares: rotary tables, which positions each query may see, and
// which of the new positions are real tokens.
struct ForwardContext {
  at::Tensor token_mask;    // [B, T] bool, false for padding
  at::Tensor routing_mask;  // [B, T] bool, the tokens a sequence-level routing decision may use
  at::Tensor cos, sin;    // [B, T, Dh] fp32
  // Per sliding window (0 = none): [B, 1, 1, T, S] in the weight dtype, 0 where a query may attend
  // a key and -1e30 where it may not; added to the attention scores.
  std::map<int64_t, at::Tensor> attention_bias;
  KVCache* cache = nullptr;
  int64_t past = 0;  // positions already in the cache
};

// x * rsqrt(mean(x^2) + eps) in fp32, cast back to x's dtype, then times weight (HF's order).
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int64_t size, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // [size]
  double eps;
};

// Called with a block's input [B, T, D] before its projections run; block-level adapter routers
// (one routing decision shared by all of a block's projections) hook in here.
using BlockInputHook = std::function<void(const at::Tensor& x, const ForwardContext& context)>;

// A block whose projections adapters can replace by name ("q_proj", "gate_proj", ...).
class ProjectionBlock : public torch::nn::Module {
 public:
  // nullptr if the block has no projection of that name.
  std::shared_ptr<Projection> projection(const std::string& name) const;
  // Swaps in `replacement` (registered under the same name, so parameter names nest below it).
  void replace_projection(const std::string& name, std::shared_ptr<Projection> replacement);
  std::vector<std::string> projection_names() const;

  BlockInputHook input_hook;

 protected:
  std::map<std::string, std::shared_ptr<Projection>*> slots_;
};

class Attention : public ProjectionBlock {
 public:
  Attention(const ModelConfig& config, int64_t layer, const at::TensorOptions& options);
  // x [B, T, D] -> [B, T, D]
  at::Tensor forward(const at::Tensor& x, ForwardContext& context);

  std::shared_ptr<Projection> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<RMSNorm> q_norm, k_norm;  // Qwen3 only
 private:
  // q k^T / sqrt(Dh) + bias for q [B, H, T, Dh], k [B, Hkv, S, Dh] -> [B, Hkv, G, T, S].
  at::Tensor attention_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& bias) const;
  // softmax(scores) v for v [B, Hkv, S, Dh] -> [B, T, H Dh].
  at::Tensor mix_values(const at::Tensor& scores, const at::Tensor& v) const;
  int64_t layer_, heads_, kv_heads_, head_dim_, window_;
};

// SwiGLU: down(silu(gate(x)) * up(x)).
class MLP : public ProjectionBlock {
 public:
  MLP(const ModelConfig& config, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& context);
  std::shared_ptr<Projection> gate_proj, up_proj, down_proj;
};

class DecoderLayer : public torch::nn::Module {
 public:
  DecoderLayer(const ModelConfig& config, int64_t layer, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, ForwardContext& context);
  std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<Attention> self_attn;
  std::shared_ptr<MLP> mlp;
};

class Embedding : public torch::nn::Module {
 public:
  Embedding(int64_t vocab, int64_t hidden, const at::TensorOptions& options);
  at::Tensor weight;  // [V, D]
};

// "model.*" in HF names.
class DecoderBody : public torch::nn::Module {
 public:
  DecoderBody(const ModelConfig& config, const at::TensorOptions& options);
  std::shared_ptr<Embedding> embed_tokens;
  torch::nn::ModuleList layers;
  std::shared_ptr<RMSNorm> norm;
};

// A causal language model. Parameters are allocated uninitialised in `options`' dtype and device and
// never require gradients; fill them with load_weights or initialize_randomly (model/loader.h).
class CausalLM : public torch::nn::Module {
 public:
  CausalLM(ModelConfig config, const at::TensorOptions& options);

  // ids [B, T] int64; attention_mask [B, T] (1 = token, 0 = padding, left or right) or undefined for
  // no padding. With a cache, ids are the new positions after the cached ones, and the cache is
  // extended. `routing_mask` [B, T] marks the positions a sequence-level router may base its
  // decision on (default: the real tokens); generation without a cache passes the prompt's.
  // Returns the final-norm hidden states [B, T, D] in the weight dtype.
  at::Tensor hidden_states(const at::Tensor& ids, const at::Tensor& attention_mask,
                           KVCache* cache = nullptr, const at::Tensor& routing_mask = {});
  // hidden [.., D] -> logits [.., V] in fp32 (the LM head runs in the weight dtype).
  at::Tensor logits(const at::Tensor& hidden);
  // The LM head's weight [V, D] (the input embedding when tied).
  const at::Tensor& output_embedding() const { return lm_head ? lm_head->weight : model->embed_tokens->weight; }
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& attention_mask,
                     KVCache* cache = nullptr) {
    return logits(hidden_states(ids, attention_mask, cache));
  }

  const ModelConfig& config() const { return config_; }
  at::TensorOptions options() const { return model->embed_tokens->weight.options(); }

  std::shared_ptr<DecoderBody> model;
  std::shared_ptr<Linear> lm_head;  // nullptr when tie_word_embeddings
  // Runs at the start of every hidden_states() with its arguments: adapters that decide once per
  // sequence before any layer runs (retrieval routing) hook in here. Empty when unused.
  std::function<void(const at::Tensor& ids, const at::Tensor& attention_mask, const at::Tensor& routing_mask,
                     const KVCache* cache)>
      before_forward;

  // Runs one decoder layer in hidden_states() while gradients are recorded, in place of
  // layer.forward (activation checkpointing installs it). Empty: layer.forward.
  std::function<at::Tensor(const std::shared_ptr<DecoderLayer>& layer, const at::Tensor& x, ForwardContext& context)>
      run_layer;

  // A block adapters attach to: its HF path ("model.layers.3.mlp"), layer index and module.
  struct NamedBlock {
    std::string path;
    int64_t layer;
    std::shared_ptr<ProjectionBlock> block;
  };
  // Every layer's attention and MLP blocks, in layer order.
  std::vector<NamedBlock> projection_blocks() const;

 private:
  ModelConfig config_;
  at::Tensor inverse_frequencies_;  // [Dh/2] fp32
};

}  // namespace remora
