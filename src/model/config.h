// The decoder's hyper-parameters, read from a Hugging Face config.json (Llama, Mistral, Qwen2, Qwen3).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace remora {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };

// How rope_scaling rewrites the inverse frequencies; `dynamic`, `yarn` etc. are rejected by name.
enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                      // llama3 only
  double high_freq_factor = 4.0;                     // llama3 only
  int64_t original_max_position_embeddings = 8192;  // llama3 only
};

// Upper bounds on a config's sizes (README: "Limits"); the largest public models are far below them.
struct ModelLimits {
  static constexpr int64_t kVocab = int64_t{1} << 22;    // 4,194,304 token ids
  static constexpr int64_t kWidth = int64_t{1} << 16;    // hidden_size (intermediate_size: 8x)
  static constexpr int64_t kLayers = 1024;
  static constexpr int64_t kHeads = 1024;                // attention and key/value heads
  static constexpr int64_t kHeadDim = 4096;
  static constexpr int64_t kContext = int64_t{1} << 24;  // max_position_embeddings
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string model_type;  // as in the file
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // explicit in Qwen3; hidden_size / num_heads otherwise
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 always; Llama/Mistral/Qwen3 when attention_bias
  bool o_bias = false;    // attention_bias (not Qwen2)
  bool mlp_bias = false;  // Llama's mlp_bias
  bool qk_norm = false;   // Qwen3
  // Per layer: 0 = full causal attention, w > 0 = a query sees only the last w positions.
  std::vector<int64_t> sliding_window;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> pad_token_id;
  std::vector<int64_t> eos_token_ids;  // eos_token_id may be a number or a list
  std::string torch_dtype = "float32";  // the stored dtype, as HF names it

  // The original object, kept so that a rewritten config (after merge, for example) loses nothing.
  nlohmann::json raw;

  // Parameters the config implies (embeddings, every layer, norms, lm_head unless tied): compared
  // with the weight files before anything is allocated. A double, so hostile sizes cannot overflow.
  double implied_parameters() const;

  // Parses and validates; `source` names the file in error messages. Throws Error naming the field.
  static ModelConfig from_json(const nlohmann::json& json, const std::string& source);
  // Reads <model_dir>/config.json.
  static ModelConfig load(const std::string& model_dir);
};

const char* architecture_name(Architecture architecture);

}  // namespace remora
