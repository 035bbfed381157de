// Forward pass of the Llama-family decoder, written to match transformers' modelling code.
#include "model/decoder.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "model/blocked_attention.h"
#include "model/decode_attention.h"
#include "model/decode_linear.h"
#include "model/rms_norm_autograd.h"
#include "model/rms_norm_rows.h"
#include "model/rope.h"
#include "model/swiglu.h"

namespace remora {

std::shared_ptr<Projection> ProjectionBlock::projection(const std::string& name) const {
  const auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : *it->second;
}

void ProjectionBlock::replace_projection(const std::string& name,
                                         std::shared_ptr<Projection> replacement) {
  const auto it = slots_.find(name);
  REMORA_CHECK(it != slots_.end(), "block has no projection named '", name, "'");
  *it->second = replace_module(name, std::move(replacement));
}

std::vector<std::string> ProjectionBlock::projection_names() const {
  std::vector<std::string> names;
  for (const auto& [name, slot] : slots_) names.push_back(name);
  return names;
}

RMSNorm::RMSNorm(int64_t size, double eps, const at::TensorOptions& options) : eps(eps) {
  weight = register_parameter("weight", at::empty({size}, options), false);
}

at::Tensor RMSNorm::forward(const at::Tensor& x) {
  // Decode steps (the rows decode_linear serves) in one pass a row; the rest keeps the eager bits.
  if (decode_linear_applies(x, weight.view({1, -1})) && rms_norm_rows_apply(x, weight)) {
    return rms_norm_rows(x, weight, eps);
  }
  return rms_norm_with_backward(x, weight, eps);  // the eager formula, a third of its saved memory
}

Attention::Attention(const ModelConfig& config, int64_t layer, const at::TensorOptions& options)
    : layer_(layer),
      heads_(config.num_heads),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      window_(config.sliding_window[layer]) {
  const int64_t d = config.hidden_size;
  slots_ = {{"q_proj", &q_proj}, {"k_proj", &k_proj}, {"v_proj", &v_proj}, {"o_proj", &o_proj}};
  q_proj = register_module("q_proj", std::make_shared<Linear>(d, heads_ * head_dim_, config.qkv_bias, options));
  k_proj = register_module("k_proj", std::make_shared<Linear>(d, kv_heads_ * head_dim_, config.qkv_bias, options));
  v_proj = register_module("v_proj", std::make_shared<Linear>(d, kv_heads_ * head_dim_, config.qkv_bias, options));
  o_proj = register_module("o_proj", std::make_shared<Linear>(heads_ * head_dim_, d, config.o_bias, options));
  if (config.qk_norm) {
    q_norm = register_module("q_norm", std::make_shared<RMSNorm>(head_dim_, config.rms_norm_eps, options));
    k_norm = register_module("k_norm", std::make_shared<RMSNorm>(head_dim_, config.rms_norm_eps, options));
  }
}

at::Tensor Attention::forward(const at::Tensor& x, ForwardContext& context) {
  if (input_hook) input_hook(x, context);
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor q = q_proj->forward(x).view({B, T, heads_, head_dim_});
  at::Tensor k = k_proj->forward(x).view({B, T, kv_heads_, head_dim_});
  at::Tensor v = v_proj->forward(x).view({B, T, kv_heads_, head_dim_});
  if (q_norm) {  // Qwen3 normalises each head before RoPE
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = apply_rope(q.transpose(1, 2), context.cos, context.sin);  // [B, H, T, Dh]
  k = apply_rope(k.transpose(1, 2), context.cos, context.sin);  // [B, Hkv, T, Dh]
  v = v.transpose(1, 2);

  if (KVCache* cache = context.cache) {
    at::Tensor& keys = cache->keys[layer_];
    at::Tensor& values = cache->values[layer_];
    if (!keys.defined()) {
      keys = at::empty({B, kv_heads_, cache->capacity, head_dim_}, k.options());
      values = at::empty({B, kv_heads_, cache->capacity, head_dim_}, v.options());
    }
    keys.narrow(2, context.past, T).copy_(k);
    values.narrow(2, context.past, T).copy_(v);
    k = keys.narrow(2, 0, context.past + T);
    v = values.narrow(2, 0, context.past + T);
  }
  const at::Tensor& bias = context.attention_bias.at(window_);
  const KVCache* cache = context.cache;
  // bf16 decode steps on the CPU: one kernel call, every row over its own columns, in fp32 throughout.
  if (cache && decode_attention_applies(q, k)) {  // q [B, H, 1, Dh]: one position
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
    return o_proj->forward(decode_attention(q, k, v, bias, cache->row_starts, scale));
  }
  // Otherwise as transformers' eager attention: scale and mask in the model dtype, softmax in fp32.
  // Without a cache (training, scoring) queries go a block at a time, over the keys they can see.
  if (!cache) return o_proj->forward(blocked_causal_attention(q, k, v, bias, window_));
  if (cache->row_starts.empty()) return o_proj->forward(mix_values(attention_scores(q, k, bias), v));
  // Serving's ragged batch: each row attends over its own columns only, so every sum runs over exactly
  // the terms (in the same order) the row sums decoding alone; padding columns would add zeros that
  // can change bf16 rounding (in the scores' batched matmul too, measured, so all of it runs per row).
  const int64_t S = k.size(2);
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t start = cache->row_starts[b];
    auto own = [&](const at::Tensor& t, int64_t dim) { return t.narrow(0, b, 1).narrow(dim, start, S - start); };
    rows.push_back(mix_values(attention_scores(q.narrow(0, b, 1), own(k, 2), own(bias, -1)), own(v, 2)));
  }
  return o_proj->forward(at::cat(rows));
}

at::Tensor Attention::attention_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& bias) const {
  const int64_t B = q.size(0), T = q.size(2), S = k.size(2), G = heads_ / kv_heads_;
  // Grouped-query attention without copying KV heads: the G query heads that share a KV head are
  // stacked along the rows, so one batched matmul per KV head serves them all.
  at::Tensor grouped_q = q.reshape({B, kv_heads_, G * T, head_dim_});
  at::Tensor scores = at::matmul(grouped_q, k.transpose(-1, -2)).view({B, kv_heads_, G, T, S});
  return at::add(bias.to(scores.scalar_type()), scores, 1.0 / std::sqrt(static_cast<double>(head_dim_)));
}

at::Tensor Attention::mix_values(const at::Tensor& scores, const at::Tensor& v) const {
  const int64_t B = scores.size(0), G = scores.size(2), T = scores.size(3), S = scores.size(4);
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(v.scalar_type()).view({B, kv_heads_, G * T, S});
  return at::matmul(probs, v)  // [B, Hkv, G*T, Dh]
      .view({B, heads_, T, head_dim_})
      .transpose(1, 2)
      .reshape({B, T, heads_ * head_dim_});
}

MLP::MLP(const ModelConfig& config, const at::TensorOptions& options) {
  const int64_t d = config.hidden_size, f = config.intermediate_size;
  slots_ = {{"gate_proj", &gate_proj}, {"up_proj", &up_proj}, {"down_proj", &down_proj}};
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(d, f, config.mlp_bias, options));
  up_proj = register_module("up_proj", std::make_shared<Linear>(d, f, config.mlp_bias, options));
  down_proj = register_module("down_proj", std::make_shared<Linear>(f, d, config.mlp_bias, options));
}

at::Tensor MLP::forward(const at::Tensor& x, const ForwardContext& context) {
  if (input_hook) input_hook(x, context);
  return down_proj->forward(swiglu(gate_proj->forward(x), up_proj->forward(x)));
}

DecoderLayer::DecoderLayer(const ModelConfig& config, int64_t layer, const at::TensorOptions& options) {
  self_attn = register_module("self_attn", std::make_shared<Attention>(config, layer, options));
  mlp = register_module("mlp", std::make_shared<MLP>(config, options));
  input_layernorm = register_module(
      "input_layernorm", std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps, options));
  post_attention_layernorm = register_module(
      "post_attention_layernorm",
      std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps, options));
}

at::Tensor DecoderLayer::forward(const at::Tensor& x, ForwardContext& context) {
  at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), context);
  return h + mlp->forward(post_attention_layernorm->forward(h), context);
}

Embedding::Embedding(int64_t vocab, int64_t hidden, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({vocab, hidden}, options), false);
}

DecoderBody::DecoderBody(const ModelConfig& config, const at::TensorOptions& options) {
  embed_tokens = register_module(
      "embed_tokens", std::make_shared<Embedding>(config.vocab_size, config.hidden_size, options));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) {
    layers->push_back(std::make_shared<DecoderLayer>(config, i, options));
  }
  norm = register_module("norm",
                         std::make_shared<RMSNorm>(config.hidden_size, config.rms_norm_eps, options));
}

CausalLM::CausalLM(ModelConfig config, const at::TensorOptions& options) : config_(std::move(config)) {
  model = register_module("model", std::make_shared<DecoderBody>(config_, options));
  if (!config_.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head", std::make_shared<Linear>(config_.hidden_size, config_.vocab_size, false, options));
  }
  inverse_frequencies_ = rope_inverse_frequencies(config_).to(options.device());
}

std::vector<CausalLM::NamedBlock> CausalLM::projection_blocks() const {
  std::vector<NamedBlock> blocks;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    auto layer = model->layers[i]->as<DecoderLayer>();
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    blocks.push_back({prefix + "self_attn", i, layer->self_attn});
    blocks.push_back({prefix + "mlp", i, layer->mlp});
  }
  return blocks;
}

namespace {

// [B, 1, 1, T, S]: key s is visible to query t (absolute index past + t) if it is a real token,
// not in the future, and (with a window) fewer than `window` positions back.
at::Tensor visibility(const at::Tensor& key_valid, int64_t past, int64_t T, int64_t window) {
  const int64_t S = key_valid.size(1);
  auto index_options = at::TensorOptions().dtype(at::kLong).device(key_valid.device());
  at::Tensor query_index = at::arange(past, past + T, index_options).view({T, 1});
  at::Tensor key_index = at::arange(S, index_options).view({1, S});
  at::Tensor visible = key_index <= query_index;
  if (window > 0) visible = visible.logical_and(query_index - key_index < window);
  return visible.unsqueeze(0).logical_and(key_valid.unsqueeze(1)).view({-1, 1, 1, T, S});
}

}  // namespace

at::Tensor CausalLM::hidden_states(const at::Tensor& ids, const at::Tensor& attention_mask,
                                   KVCache* cache, const at::Tensor& routing_mask) {
  REMORA_CHECK(ids.dim() == 2, "input ids must be [batch, tokens], got ", ids.sizes());
  const int64_t B = ids.size(0), T = ids.size(1);
  if (before_forward) before_forward(ids, attention_mask, routing_mask, cache);
  // A longer input would cost T x T attention scores per head for positions the model never saw.
  REMORA_CHECK(T <= config_.max_position_embeddings, "an input of ", T, " tokens is longer than the model's context of ",
               config_.max_position_embeddings, " (max_position_embeddings)");
  const auto device = model->embed_tokens->weight.device();
  at::Tensor mask = attention_mask.defined()
                        ? attention_mask.to(device, at::kBool)
                        : at::ones({B, T}, at::TensorOptions().dtype(at::kBool).device(device));
  REMORA_CHECK(mask.sizes() == ids.sizes(), "attention mask ", mask.sizes(), " does not match ids ",
               ids.sizes());

  ForwardContext context;
  context.token_mask = mask;
  context.routing_mask = routing_mask.defined() ? routing_mask.to(device, at::kBool).logical_and(mask) : mask;
  REMORA_CHECK(context.routing_mask.sizes() == ids.sizes(), "routing mask ", context.routing_mask.sizes(),
               " does not match ids ", ids.sizes());
  at::Tensor key_valid = mask;
  if (cache) {
    if (!cache->valid.defined()) {
      cache->valid = at::zeros({B, cache->capacity}, mask.options());
    }
    REMORA_CHECK(cache->valid.size(0) == B, "KV cache holds ", cache->valid.size(0),
                 " rows, the input ", B);
    REMORA_CHECK(cache->length + T <= cache->capacity, "KV cache capacity ", cache->capacity,
                 " exceeded (", cache->length, " cached + ", T, " new positions)");
    context.cache = cache;
    context.past = cache->length;
    cache->valid.narrow(1, context.past, T).copy_(mask);
    key_valid = cache->valid.narrow(1, 0, context.past + T);
  }
  // Positions count real tokens only, so left padding shifts nothing (as HF generate does).
  at::Tensor positions =
      (key_valid.to(at::kLong).cumsum(1) - 1).narrow(1, context.past, T).clamp_min(0);
  std::tie(context.cos, context.sin) = rope_tables(inverse_frequencies_, positions);
  // Cast once here rather than for every query and key projection of every layer.
  context.cos = context.cos.to(model->embed_tokens->weight.scalar_type());
  context.sin = context.sin.to(model->embed_tokens->weight.scalar_type());
  for (int64_t window : config_.sliding_window) {
    if (!context.attention_bias.count(window)) {
      // A large finite negative rather than -inf: a padding query that sees no key gets a uniform
      // (ignored) distribution instead of NaN, and adding it to a score cannot overflow.
      at::Tensor visible = visibility(key_valid, context.past, T, window);
      context.attention_bias[window] =
          at::zeros(visible.sizes(), model->embed_tokens->weight.options())
              .masked_fill_(visible.logical_not(), model->embed_tokens->weight.scalar_type() == at::kHalf ? -65504.0 : -1e30);
    }
  }

  at::Tensor h = at::embedding(model->embed_tokens->weight, ids.to(device));
  const bool checkpointed = run_layer && at::GradMode::is_enabled();
  for (const auto& layer : *model->layers) {
    h = checkpointed ? run_layer(std::dynamic_pointer_cast<DecoderLayer>(layer), h, context)
                     : layer->as<DecoderLayer>()->forward(h, context);
  }
  if (cache) cache->length += T;
  return model->norm->forward(h);
}

at::Tensor CausalLM::logits(const at::Tensor& hidden) {
  const at::Tensor& head = output_embedding();
  const at::Tensor input = hidden.to(head.scalar_type());
  if (decode_linear_applies(input, head)) return decode_linear(input, head, {}).to(at::kFloat);
  return at::linear(input, head).to(at::kFloat);
}

}  // namespace remora
