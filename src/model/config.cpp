// config.json parsing for the Llama family, with the defaults transformers' config classes use.
#include "model/config.h"

#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"

namespace remora {
namespace {

// Typed field access that names the file and field on every failure.
class Fields {
 public:
  Fields(const nlohmann::json& json, std::string source) : json_(json), source_(std::move(source)) {}

  bool has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }

  int64_t positive_int(const char* key) const {
    if (!has(key)) fail(source_, ": missing required field '", key, "'");
    const auto& v = json_[key];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0) {
      fail(source_, ": field '", key, "' must be a positive integer, got ", describe(v));
    }
    return v.get<int64_t>();
  }
  int64_t non_negative_int(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    const auto& v = json_[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      fail(source_, ": field '", key, "' must be a non-negative integer, got ", describe(v));
    }
    return v.get<int64_t>();
  }
  int64_t positive_int(const char* key, int64_t fallback) const {
    return has(key) ? positive_int(key) : fallback;
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const auto& v = json_[key];
    if (!v.is_number()) fail(source_, ": field '", key, "' must be a number, got ", describe(v));
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& v = json_[key];
    if (!v.is_boolean()) fail(source_, ": field '", key, "' must be true or false, got ", describe(v));
    return v.get<bool>();
  }
  std::string text(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const auto& v = json_[key];
    if (!v.is_string()) fail(source_, ": field '", key, "' must be a string, got ", describe(v));
    return v.get<std::string>();
  }
  std::optional<int64_t> token_id(const char* key) const {
    if (!has(key)) return std::nullopt;
    const auto& v = json_[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      fail(source_, ": field '", key, "' must be a token id, got ", describe(v));
    }
    return v.get<int64_t>();
  }
  std::vector<int64_t> token_ids(const char* key) const {
    if (!has(key)) return {};
    const auto& v = json_[key];
    if (v.is_array()) {
      std::vector<int64_t> ids;
      for (const auto& item : v) {
        if (!item.is_number_integer() || item.get<int64_t>() < 0) {
          fail(source_, ": field '", key, "' must hold token ids, got ", describe(v));
        }
        ids.push_back(item.get<int64_t>());
      }
      return ids;
    }
    return {*token_id(key)};
  }

 private:
  const nlohmann::json& json_;
  std::string source_;
};

Architecture parse_architecture(const std::string& model_type, const std::string& source) {
  if (model_type == "llama") return Architecture::kLlama;
  if (model_type == "mistral") return Architecture::kMistral;
  if (model_type == "qwen2") return Architecture::kQwen2;
  if (model_type == "qwen3") return Architecture::kQwen3;
  fail(source, ": unsupported model_type '", model_type,
       "' (supported: llama, mistral, qwen2, qwen3)");
}

RopeScaling parse_rope_scaling(const nlohmann::json& json, const std::string& source) {
  RopeScaling scaling;
  if (!json.contains("rope_scaling") || json["rope_scaling"].is_null()) return scaling;
  const auto& object = json["rope_scaling"];
  const std::string where = source + ": rope_scaling";
  if (!object.is_object()) fail(where, " must be an object or null");
  Fields fields(object, where);
  // Newer files write rope_type, older ones type; both mean the same.
  const std::string type = fields.text("rope_type", fields.text("type", "default"));
  if (type == "default") return scaling;
  scaling.factor = fields.number("factor", 1.0);
  if (scaling.factor <= 0) fail(where, ": factor must be positive");
  if (type == "linear") {
    scaling.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    scaling.type = RopeScalingType::kLlama3;
    scaling.low_freq_factor = fields.number("low_freq_factor", 1.0);
    scaling.high_freq_factor = fields.number("high_freq_factor", 4.0);
    scaling.original_max_position_embeddings =
        fields.positive_int("original_max_position_embeddings", 8192);
    if (scaling.high_freq_factor <= scaling.low_freq_factor) {
      fail(where, ": high_freq_factor must exceed low_freq_factor");
    }
  } else {
    fail(where, ": unsupported rope type '", type, "' (supported: default, linear, llama3)");
  }
  return scaling;
}

}  // namespace

const char* architecture_name(Architecture architecture) {
  switch (architecture) {
    case Architecture::kLlama: return "llama";
    case Architecture::kMistral: return "mistral";
    case Architecture::kQwen2: return "qwen2";
    case Architecture::kQwen3: return "qwen3";
  }
  return "?";
}

ModelConfig ModelConfig::from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) fail(source, ": not a JSON object");
  Fields f(json, source);
  ModelConfig c;
  c.raw = json;
  c.model_type = f.text("model_type", "");
  if (c.model_type.empty()) fail(source, ": missing required field 'model_type'");
  c.architecture = parse_architecture(c.model_type, source);
  // Caps far above any real model, checked before anything is sized from them (a hostile config
  // would otherwise ask for petabytes); load_causal_lm then checks the sizes against the weights.
  const auto capped = [&](const char* key, int64_t value, int64_t cap) {
    if (value > cap) fail(source, ": field '", key, "' is ", value, ", above remora's limit of ", cap);
    return value;
  };
  c.vocab_size = capped("vocab_size", f.positive_int("vocab_size"), ModelLimits::kVocab);
  c.hidden_size = capped("hidden_size", f.positive_int("hidden_size"), ModelLimits::kWidth);
  c.intermediate_size = capped("intermediate_size", f.positive_int("intermediate_size"), ModelLimits::kWidth * 8);
  c.num_layers = capped("num_hidden_layers", f.positive_int("num_hidden_layers"), ModelLimits::kLayers);
  c.num_heads = capped("num_attention_heads", f.positive_int("num_attention_heads"), ModelLimits::kHeads);
  c.num_kv_heads = capped("num_key_value_heads", f.positive_int("num_key_value_heads", c.num_heads), ModelLimits::kHeads);
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(source, ": num_attention_heads (", c.num_heads, ") is not a multiple of num_key_value_heads (",
         c.num_kv_heads, ")");
  }
  if (f.has("head_dim")) {
    c.head_dim = capped("head_dim", f.positive_int("head_dim"), ModelLimits::kHeadDim);
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      fail(source, ": hidden_size (", c.hidden_size, ") is not a multiple of num_attention_heads (",
           c.num_heads, ") and no head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) fail(source, ": head_dim (", c.head_dim, ") must be even for RoPE");
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.rope_theta = f.number("rope_theta", 10000.0);
  if (c.rms_norm_eps <= 0 || c.rope_theta <= 0) {
    fail(source, ": rms_norm_eps and rope_theta must be positive");
  }
  c.rope_scaling = parse_rope_scaling(json, source);
  c.max_position_embeddings =
      capped("max_position_embeddings", f.positive_int("max_position_embeddings", 2048), ModelLimits::kContext);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  const std::string act = f.text("hidden_act", "silu");
  if (act != "silu") fail(source, ": unsupported hidden_act '", act, "' (expected silu)");

  const bool attention_bias = f.boolean("attention_bias", false);
  if (c.architecture == Architecture::kQwen2) {
    c.qkv_bias = true;  // Qwen2 always has q/k/v biases and never an o_proj bias
  } else if (c.architecture == Architecture::kMistral) {
    c.qkv_bias = c.o_bias = false;  // transformers' Mistral ignores attention_bias
  } else {
    c.qkv_bias = c.o_bias = attention_bias;
  }
  c.mlp_bias = c.architecture == Architecture::kLlama && f.boolean("mlp_bias", false);
  c.qk_norm = c.architecture == Architecture::kQwen3;

  // Mistral applies sliding_window to every layer when it is set; Qwen2/3 only with
  // use_sliding_window, and only from layer max_window_layers on.
  c.sliding_window.assign(c.num_layers, 0);
  // MistralConfig's default window is 4096 when the key is absent; null turns it off. Newer files
  // name each layer's kind in layer_types, which then decides.
  if (c.architecture == Architecture::kMistral) {
    const int64_t window = json.contains("sliding_window") ? (f.has("sliding_window") ? f.positive_int("sliding_window") : 0) : 4096;
    c.sliding_window.assign(c.num_layers, window);
  } else if ((c.architecture == Architecture::kQwen2 || c.architecture == Architecture::kQwen3) &&
             f.boolean("use_sliding_window", false)) {
    const int64_t window = f.positive_int("sliding_window");
    if (f.has("layer_types")) {
      const auto& types = json["layer_types"];
      if (!types.is_array() || static_cast<int64_t>(types.size()) != c.num_layers) {
        fail(source, ": layer_types must list one entry per layer (", c.num_layers, ")");
      }
      for (int64_t i = 0; i < c.num_layers; ++i) {
        if (types[i] == "sliding_attention") c.sliding_window[i] = window;
        else if (types[i] != "full_attention") fail(source, ": layer_types[", i, "] is ", describe(types[i]), ", expected \"full_attention\" or \"sliding_attention\"");
      }
    } else {
      const int64_t first = f.non_negative_int("max_window_layers", 28);
      for (int64_t i = first; i < c.num_layers; ++i) c.sliding_window[i] = window;
    }
  }

  c.bos_token_id = f.token_id("bos_token_id");
  c.pad_token_id = f.token_id("pad_token_id");
  c.eos_token_ids = f.token_ids("eos_token_id");
  for (const auto& [key, id] : {std::pair{"bos_token_id", c.bos_token_id}, std::pair{"pad_token_id", c.pad_token_id}}) {
    if (id && *id >= c.vocab_size) fail(source, ": ", key, " ", *id, " is outside the vocabulary (vocab_size ", c.vocab_size, ")");
  }
  for (const int64_t id : c.eos_token_ids) {
    if (id >= c.vocab_size) fail(source, ": eos_token_id ", id, " is outside the vocabulary (vocab_size ", c.vocab_size, ")");
  }
  c.torch_dtype = f.text("torch_dtype", f.text("dtype", "float32"));
  return c;
}

double ModelConfig::implied_parameters() const {
  const double h = static_cast<double>(hidden_size), q = static_cast<double>(num_heads * head_dim),
               kv = static_cast<double>(num_kv_heads * head_dim);
  const double attention = h * q + 2 * h * kv + q * h + (qkv_bias ? q + 2 * kv : 0) + (o_bias ? h : 0) +
                           (qk_norm ? 2.0 * head_dim : 0);
  const double mlp = 3 * h * intermediate_size + (mlp_bias ? 2.0 * intermediate_size + h : 0);
  const double embeddings = static_cast<double>(vocab_size) * h * (tie_word_embeddings ? 1 : 2);
  return embeddings + num_layers * (attention + mlp + 2 * h) + h;
}

ModelConfig ModelConfig::load(const std::string& model_dir) {
  if (!is_folder(model_dir)) fail(model_dir, ": model folder does not exist");
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  if (!path_exists(path)) fail(path, ": missing (a Hugging Face model folder needs config.json)");
  return from_json(read_json_file(path, kMaxConfigBytes), path);
}

}  // namespace remora
