// Tests ModelConfig::from_json: defaults and per-architecture flags, rope_scaling, eos ids, sliding windows, errors.
#include "model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace remora {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr const char* kSource = "models/test/config.json";

// A minimal valid config of the given model_type: hidden 256, 8 heads, 4 layers.
json base_config(const std::string& model_type) {
  return {{"model_type", model_type},   {"vocab_size", 32000},       {"hidden_size", 256},
          {"intermediate_size", 688},   {"num_hidden_layers", 4},    {"num_attention_heads", 8}};
}

// base_config(model_type) with `overrides` merged over it (a null value stays as null).
ModelConfig parse(const std::string& model_type, const json& overrides = json::object()) {
  json config = base_config(model_type);
  for (const auto& [key, value] : overrides.items()) config[key] = value;
  return ModelConfig::from_json(config, kSource);
}

// The message of the remora::Error that parsing `config` throws; records a failure otherwise.
std::string parse_error(const json& config) {
  try {
    ModelConfig::from_json(config, kSource);
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected remora::Error, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected remora::Error, nothing was thrown for " << config.dump();
  return {};
}

std::string parse_error(const std::string& model_type, const json& overrides) {
  json config = base_config(model_type);
  for (const auto& [key, value] : overrides.items()) config[key] = value;
  return parse_error(config);
}

// ---------------------------------------------------------------------------------------------
// Defaults and per-architecture flags

TEST(ModelConfigTest, LlamaDefaults) {
  const ModelConfig c = parse("llama");
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.intermediate_size, 688);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 8);  // defaults to num_attention_heads
  EXPECT_EQ(c.head_dim, 32);     // hidden_size / num_attention_heads
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.torch_dtype, "float32");
  EXPECT_EQ(c.raw, base_config("llama"));
}

TEST(ModelConfigTest, ExplicitValuesOverrideDefaults) {
  const ModelConfig c = parse("llama", {{"num_key_value_heads", 2},
                                        {"rope_theta", 500000.0},
                                        {"rms_norm_eps", 1e-5},
                                        {"max_position_embeddings", 8192},
                                        {"tie_word_embeddings", true},
                                        {"bos_token_id", 1},
                                        {"pad_token_id", nullptr},
                                        {"torch_dtype", "bfloat16"}});
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigTest, Qwen3ExplicitHeadDimWinsOverHiddenOverHeads) {
  const ModelConfig c = parse("qwen3", {{"head_dim", 128}, {"num_key_value_heads", 2}});
  EXPECT_EQ(c.architecture, Architecture::kQwen3);
  EXPECT_EQ(c.head_dim, 128);  // not 256 / 8 = 32
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
}

TEST(ModelConfigTest, Qwen2HasQkvBiasButNoOutputBias) {
  const ModelConfig c = parse("qwen2");
  EXPECT_EQ(c.architecture, Architecture::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  // attention_bias does not change Qwen2's fixed layout.
  const ModelConfig with_flag = parse("qwen2", {{"attention_bias", true}});
  EXPECT_TRUE(with_flag.qkv_bias);
  EXPECT_FALSE(with_flag.o_bias);
}

TEST(ModelConfigTest, LlamaAttentionBiasSetsBothBiases) {
  const ModelConfig c = parse("llama", {{"attention_bias", true}});
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  const ModelConfig off = parse("llama", {{"attention_bias", false}});
  EXPECT_FALSE(off.qkv_bias);
  EXPECT_FALSE(off.o_bias);
}

TEST(ModelConfigTest, MlpBiasOnlyForLlama) {
  EXPECT_TRUE(parse("llama", {{"mlp_bias", true}}).mlp_bias);
  EXPECT_FALSE(parse("mistral", {{"mlp_bias", true}}).mlp_bias);
  EXPECT_FALSE(parse("qwen2", {{"mlp_bias", true}}).mlp_bias);
  EXPECT_FALSE(parse("qwen3", {{"mlp_bias", true}}).mlp_bias);
}

TEST(ModelConfigTest, QkNormOnlyForQwen3) {
  EXPECT_TRUE(parse("qwen3").qk_norm);
  EXPECT_FALSE(parse("llama").qk_norm);
  EXPECT_FALSE(parse("mistral").qk_norm);
  EXPECT_FALSE(parse("qwen2").qk_norm);
}

// ---------------------------------------------------------------------------------------------
// rope_scaling

TEST(ModelConfigTest, RopeScalingLlama3WithRopeTypeKey) {
  const ModelConfig c = parse("llama", {{"rope_scaling",
                                         {{"rope_type", "llama3"},
                                          {"factor", 32.0},
                                          {"low_freq_factor", 2.0},
                                          {"high_freq_factor", 8.0},
                                          {"original_max_position_embeddings", 4096}}}});
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 2.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
}

TEST(ModelConfigTest, RopeScalingLegacyTypeKey) {
  const ModelConfig linear = parse("llama", {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}});
  EXPECT_EQ(linear.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(linear.rope_scaling.factor, 2.0);

  const ModelConfig llama3 = parse("llama", {{"rope_scaling",
                                              {{"type", "llama3"},
                                               {"factor", 8.0},
                                               {"low_freq_factor", 1.0},
                                               {"high_freq_factor", 4.0},
                                               {"original_max_position_embeddings", 8192}}}});
  EXPECT_EQ(llama3.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(llama3.rope_scaling.factor, 8.0);
  EXPECT_EQ(llama3.rope_scaling.original_max_position_embeddings, 8192);
}

TEST(ModelConfigTest, RopeScalingLinearWithRopeTypeKey) {
  const ModelConfig c = parse("mistral", {{"rope_scaling", {{"rope_type", "linear"}, {"factor", 4.0}}}});
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
}

TEST(ModelConfigTest, RopeScalingNullOrDefaultIsNone) {
  EXPECT_EQ(parse("llama", {{"rope_scaling", nullptr}}).rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(parse("llama", {{"rope_scaling", {{"rope_type", "default"}}}}).rope_scaling.type,
            RopeScalingType::kNone);
}

TEST(ModelConfigTest, RopeScalingYarnIsRejectedByName) {
  EXPECT_THAT(parse_error("qwen2", {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}}}),
              AllOf(HasSubstr(kSource), HasSubstr("rope_scaling"), HasSubstr("'yarn'")));
  EXPECT_THAT(parse_error("llama", {{"rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}}),
              HasSubstr("'dynamic'"));
}

// ---------------------------------------------------------------------------------------------
// eos_token_id

TEST(ModelConfigTest, EosTokenIdAsNumberOrList) {
  EXPECT_EQ(parse("llama", {{"eos_token_id", 2}}).eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(parse("llama", {{"vocab_size", 128256}, {"eos_token_id", {128001, 128008, 128009}}}).eos_token_ids,
            (std::vector<int64_t>{128001, 128008, 128009}));
  // An id the embedding has no row for is refused when the file is read, not at the first lookup.
  EXPECT_THAT(parse_error("llama", {{"vocab_size", 128000}, {"eos_token_id", {128001}}}),
              HasSubstr("eos_token_id 128001 is outside the vocabulary (vocab_size 128000)"));
  EXPECT_TRUE(parse("llama", {{"eos_token_id", nullptr}}).eos_token_ids.empty());
  EXPECT_THAT(parse_error("llama", {{"eos_token_id", {1, -2}}}), HasSubstr("'eos_token_id'"));
  EXPECT_THAT(parse_error("llama", {{"eos_token_id", "2"}}), HasSubstr("'eos_token_id'"));
}

// ---------------------------------------------------------------------------------------------
// Sliding windows

TEST(ModelConfigTest, MistralSlidingWindowAbsentNullOrNumber) {
  EXPECT_EQ(parse("mistral").sliding_window, (std::vector<int64_t>{4096, 4096, 4096, 4096}));
  EXPECT_EQ(parse("mistral", {{"sliding_window", nullptr}}).sliding_window,
            (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_EQ(parse("mistral", {{"sliding_window", 1024}}).sliding_window,
            (std::vector<int64_t>{1024, 1024, 1024, 1024}));
}

TEST(ModelConfigTest, LlamaIgnoresSlidingWindow) {
  EXPECT_EQ(parse("llama", {{"sliding_window", 1024}}).sliding_window,
            (std::vector<int64_t>{0, 0, 0, 0}));
}

TEST(ModelConfigTest, Qwen2SlidingWindowFromMaxWindowLayers) {
  const ModelConfig c =
      parse("qwen2", {{"use_sliding_window", true}, {"sliding_window", 512}, {"max_window_layers", 1}});
  EXPECT_EQ(c.sliding_window, (std::vector<int64_t>{0, 512, 512, 512}));
}

TEST(ModelConfigTest, Qwen2SlidingWindowOffUnlessUseSlidingWindow) {
  EXPECT_EQ(parse("qwen2", {{"sliding_window", 512}, {"max_window_layers", 1}}).sliding_window,
            (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_EQ(parse("qwen2", {{"use_sliding_window", false}, {"sliding_window", 512}}).sliding_window,
            (std::vector<int64_t>{0, 0, 0, 0}));
  // The default max_window_layers (28) is beyond this 4-layer model.
  EXPECT_EQ(parse("qwen3", {{"use_sliding_window", true}, {"sliding_window", 512}}).sliding_window,
            (std::vector<int64_t>{0, 0, 0, 0}));
}

TEST(ModelConfigTest, LayerTypesDecideWhenPresent) {
  const json layer_types = {"sliding_attention", "full_attention", "sliding_attention", "full_attention"};
  const ModelConfig c = parse("qwen2", {{"use_sliding_window", true},
                                        {"sliding_window", 256},
                                        {"max_window_layers", 1},
                                        {"layer_types", layer_types}});
  EXPECT_EQ(c.sliding_window, (std::vector<int64_t>{256, 0, 256, 0}));

  EXPECT_THAT(parse_error("qwen3", {{"use_sliding_window", true},
                                    {"sliding_window", 256},
                                    {"layer_types", {"full_attention", "sliding_attention"}}}),
              HasSubstr("layer_types"));
  EXPECT_THAT(parse_error("qwen3", {{"use_sliding_window", true},
                                    {"sliding_window", 256},
                                    {"layer_types", {"full_attention", "chunked", "full_attention",
                                                     "full_attention"}}}),
              AllOf(HasSubstr("layer_types[1]"), HasSubstr("chunked")));
}

// ---------------------------------------------------------------------------------------------
// Errors name the field

TEST(ModelConfigTest, UnsupportedModelType) {
  EXPECT_THAT(parse_error("gpt2", json::object()),
              AllOf(HasSubstr(kSource), HasSubstr("model_type"), HasSubstr("'gpt2'")));
  json no_type = base_config("llama");
  no_type.erase("model_type");
  EXPECT_THAT(parse_error(no_type), HasSubstr("'model_type'"));
}

TEST(ModelConfigTest, MissingHiddenSize) {
  json config = base_config("llama");
  config.erase("hidden_size");
  EXPECT_THAT(parse_error(config), AllOf(HasSubstr(kSource), HasSubstr("'hidden_size'")));
  config["hidden_size"] = nullptr;
  EXPECT_THAT(parse_error(config), HasSubstr("'hidden_size'"));
}

TEST(ModelConfigTest, HeadsNotAMultipleOfKvHeads) {
  EXPECT_THAT(parse_error("llama", {{"num_key_value_heads", 3}}),
              AllOf(HasSubstr(kSource), HasSubstr("num_attention_heads"),
                    HasSubstr("num_key_value_heads")));
}

TEST(ModelConfigTest, UnsupportedHiddenAct) {
  EXPECT_THAT(parse_error("llama", {{"hidden_act", "gelu"}}),
              AllOf(HasSubstr(kSource), HasSubstr("hidden_act"), HasSubstr("'gelu'")));
  EXPECT_EQ(parse("llama", {{"hidden_act", "silu"}}).architecture, Architecture::kLlama);
}

TEST(ModelConfigTest, VocabSizeMustBeAPositiveInteger) {
  EXPECT_THAT(parse_error("llama", {{"vocab_size", -5}}),
              AllOf(HasSubstr(kSource), HasSubstr("'vocab_size'"), HasSubstr("-5")));
  EXPECT_THAT(parse_error("llama", {{"vocab_size", "32000"}}), HasSubstr("'vocab_size'"));
  EXPECT_THAT(parse_error("llama", {{"vocab_size", 0}}), HasSubstr("'vocab_size'"));
  EXPECT_THAT(parse_error("llama", {{"vocab_size", 3.5}}), HasSubstr("'vocab_size'"));
}

TEST(ModelConfigTest, NotAnObject) {
  EXPECT_THAT(parse_error(json::array({1, 2})), AllOf(HasSubstr(kSource), HasSubstr("not a JSON object")));
}

}  // namespace
}  // namespace remora
