// init-model presets, from a few-hundred-KB toy to about 100M parameters (counts for --arch llama).
#include "model/presets.h"

#include "core/error.h"

namespace remora {
namespace {

struct Shape {
  const char* name;
  const char* description;
  int64_t hidden, intermediate, layers, heads, kv_heads, vocab, context;
};

constexpr Shape kShapes[] = {
    {"toy", "0.16M params, hidden 64, 2 layers: unit tests", 64, 176, 2, 4, 2, 512, 512},
    {"tiny", "5M params, hidden 256, 4 layers: the README demo", 256, 704, 4, 8, 4, 4096, 1024},
    {"small", "32M params, hidden 512, 8 layers", 512, 1408, 8, 8, 4, 8192, 2048},
    {"base", "101M params, hidden 768, 12 layers", 768, 2048, 12, 12, 4, 16384, 2048},
};

}  // namespace

std::vector<std::pair<std::string, std::string>> preset_descriptions() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& shape : kShapes) out.emplace_back(shape.name, shape.description);
  return out;
}

nlohmann::json preset_config(const std::string& arch, const std::string& preset) {
  const Shape* shape = nullptr;
  for (const auto& candidate : kShapes) {
    if (preset == candidate.name) shape = &candidate;
  }
  if (!shape) fail("--preset: unknown preset '", preset, "' (expected toy, tiny, small or base)");
  nlohmann::json c = {
      {"hidden_size", shape->hidden},
      {"intermediate_size", shape->intermediate},
      {"num_hidden_layers", shape->layers},
      {"num_attention_heads", shape->heads},
      {"num_key_value_heads", shape->kv_heads},
      {"vocab_size", shape->vocab},
      {"max_position_embeddings", shape->context},
      {"hidden_act", "silu"},
      {"initializer_range", 0.02},
      {"rms_norm_eps", 1e-6},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"use_cache", true},
  };
  if (arch == "llama") {
    c["architectures"] = {"LlamaForCausalLM"};
    c["model_type"] = "llama";
    c["rope_theta"] = 500000.0;
    c["tie_word_embeddings"] = false;
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
    c["rms_norm_eps"] = 1e-5;
  } else if (arch == "qwen2") {
    c["architectures"] = {"Qwen2ForCausalLM"};
    c["model_type"] = "qwen2";
    c["rope_theta"] = 1000000.0;
    c["tie_word_embeddings"] = true;
    c["use_sliding_window"] = false;
  } else if (arch == "qwen3") {
    c["architectures"] = {"Qwen3ForCausalLM"};
    c["model_type"] = "qwen3";
    c["rope_theta"] = 1000000.0;
    c["tie_word_embeddings"] = true;
    c["attention_bias"] = false;
    c["head_dim"] = 2 * shape->hidden / shape->heads;
    c["use_sliding_window"] = false;
  } else {
    fail("--arch: unknown architecture '", arch, "' (expected llama, qwen2 or qwen3)");
  }
  return c;
}

}  // namespace remora
