// Adapter folders and configs: PEFT's own layout loads, matching follows PEFT, bad input is named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace remora::testing;

class AdapterFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::scratch_path("adapter_io_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write_config(const nlohmann::json& config) { std::ofstream(dir_ / "adapter_config.json") << config.dump(2); }
  std::string load_error(std::shared_ptr<CausalLM> base) {
    try {
      load_adapter(std::move(base), dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }
  fs::path dir_;
};

// adapter_config.json as PEFT writes it, noise fields included.
nlohmann::json peft_config(bool rslora) {
  return {{"alpha_pattern", nlohmann::json::object()}, {"auto_mapping", nullptr},
          {"base_model_name_or_path", "/home/someone/llama"}, {"bias", "none"},
          {"fan_in_fan_out", false}, {"inference_mode", true}, {"init_lora_weights", true},
          {"layer_replication", nullptr}, {"layers_pattern", nullptr}, {"layers_to_transform", nullptr},
          {"loftq_config", nlohmann::json::object()}, {"lora_alpha", 16}, {"lora_dropout", 0.05},
          {"megatron_config", nullptr}, {"megatron_core", "megatron.core"}, {"modules_to_save", nullptr},
          {"peft_type", "LORA"}, {"r", 4}, {"rank_pattern", nlohmann::json::object()}, {"revision", nullptr},
          {"target_modules", {"v_proj", "q_proj"}}, {"task_type", "CAUSAL_LM"}, {"use_dora", false},
          {"use_rslora", rslora}};
}

TEST_F(AdapterFolder, HandWrittenPeftLoraAppliesScaleTimesBA) {
  for (bool rslora : {false, true}) {
    SCOPED_TRACE(rslora ? "rslora" : "lora");
    auto base = random_model(toy_config("llama"), 8);
    write_config(peft_config(rslora));
    // PEFT names and shapes: A [r, in], B [out, r], stored here in bf16 as many PEFT files are.
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    std::map<std::string, std::pair<at::Tensor, at::Tensor>> factors;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(2);
    for (int layer = 0; layer < 2; ++layer) {
      for (const auto& [proj, out] : {std::pair{"q_proj", 64}, {"v_proj", 32}}) {
        const std::string path = "model.layers." + std::to_string(layer) + ".self_attn." + proj;
        at::Tensor a = at::empty({4, 64}).normal_(0, 0.3, generator).to(at::kBFloat16);
        at::Tensor b = at::empty({out, 4}).normal_(0, 0.3, generator).to(at::kBFloat16);
        tensors.emplace_back("base_model.model." + path + ".lora_A.weight", a);
        tensors.emplace_back("base_model.model." + path + ".lora_B.weight", b);
        factors[path] = {a.to(at::kFloat), b.to(at::kFloat)};
      }
    }
    write_safetensors((dir_ / "adapter_model.safetensors").string(), tensors);
    at::Tensor ids = random_ids(1, 6, 512, 3);
    auto adapted = load_adapter(base, dir_.string());
    at::NoGradGuard no_grad;
    at::Tensor actual = adapted->model().forward(ids, {});

    // The same update folded by hand into a fresh copy of the base.
    auto expected_model = random_model(toy_config("llama"), 8);
    const double scale = rslora ? 16.0 / 2.0 : 16.0 / 4.0;
    auto params = expected_model->named_parameters();
    for (const auto& [path, ab] : factors) {
      params[path + ".weight"].add_(at::matmul(ab.second, ab.first) * scale);
    }
    EXPECT_LT((actual - expected_model->forward(ids, {})).abs().max().item<double>(), 1e-4);
  }
}

TEST_F(AdapterFolder, SavedLoraUsesExactlyPeftNamesAndFields) {
  AdapterConfig config = adapter_config(AdapterMethod::kRslora);
  config.target_modules = nlohmann::json::array({"q_proj", "down_proj"});
  AdaptedModel adapted(random_model(toy_config("qwen2")), config);
  save_adapter(adapted, (dir_ / "out").string());
  SafetensorsFile file((dir_ / "out" / "adapter_model.safetensors").string());
  EXPECT_EQ(file.metadata().at("format"), "pt");
  ASSERT_NE(file.find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"), nullptr);
  EXPECT_EQ(file.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")->shape,
            (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(file.find("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")->shape,
            (std::vector<int64_t>{4, 176}));
  EXPECT_EQ(file.entries().size(), 8u);
  auto json = nlohmann::json::parse(std::ifstream(dir_ / "out" / "adapter_config.json"));
  EXPECT_EQ(json["peft_type"], "LORA");
  EXPECT_EQ(json["use_rslora"], true);
  EXPECT_EQ(json["r"], 4);
  EXPECT_EQ(json["task_type"], "CAUSAL_LM");
  EXPECT_FALSE(json.contains("method")) << "no remora-only keys in a PEFT LoRA config";
}

TEST_F(AdapterFolder, ErrorsNameTheProblem) {
  AdaptedModel adapted(random_model(toy_config("llama")), adapter_config(AdapterMethod::kRemix));
  save_adapter(adapted, dir_.string(), true);
  // A base of another width: the first tensor whose shape differs is named.
  EXPECT_THAT(load_error(random_model(toy_config("llama", {{"hidden_size", 32}, {"num_attention_heads", 2},
                                                           {"num_key_value_heads", 1}}))),
              AllOf(HasSubstr("adapter_model.safetensors"), HasSubstr("has shape")));
  auto config = nlohmann::json::parse(std::ifstream(dir_ / "adapter_config.json"));
  config["top_kk"] = 2;
  write_config(config);
  EXPECT_THAT(load_error(random_model(toy_config("llama"))), HasSubstr("unknown field 'top_kk'"));
  config.erase("top_kk");
  config["routing"] = "batch";
  write_config(config);
  EXPECT_THAT(load_error(random_model(toy_config("llama"))), HasSubstr("routing must be"));
  config["routing"] = "token";
  config["method"] = "moe";
  write_config(config);
  EXPECT_THAT(load_error(random_model(toy_config("llama"))), HasSubstr("unknown method 'moe'"));
  auto peft = peft_config(false);
  peft["fan_in_fan_out"] = true;
  write_config(peft);
  EXPECT_THAT(load_error(random_model(toy_config("llama"))), HasSubstr("fan_in_fan_out = true is not supported"));

}

TEST_F(AdapterFolder, MissingAndExtraTensorsAreNamed) {
  write_config(peft_config(false));
  write_safetensors((dir_ / "adapter_model.safetensors").string(),
                    {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", at::zeros({4, 64})}});
  EXPECT_THAT(load_error(random_model(toy_config("llama"))),
              HasSubstr("no tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight'"));
  // use_dora: true needs each module's magnitude vector beside its factors.
  auto dora = peft_config(false);
  dora["use_dora"] = true;
  write_config(dora);
  write_safetensors((dir_ / "adapter_model.safetensors").string(),
                    {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", at::zeros({4, 64})},
                     {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", at::zeros({64, 4})}});
  EXPECT_THAT(load_error(random_model(toy_config("llama"))),
              HasSubstr("no tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector' (shape [64])"));
}

// --- Target matching as PEFT does it --------------------------------------------------------

std::vector<std::string> adapted_paths(const AdapterConfig& config) {
  AdaptedModel adapted(random_model(toy_config("llama")), config);
  std::vector<std::string> paths;
  for (const auto& a : adapted.adapted()) paths.push_back(a->path());
  return paths;
}

TEST(TargetModules, ListRegexAllLinearAndExclude) {
  AdapterConfig config = adapter_config(AdapterMethod::kLora);
  config.target_modules = nlohmann::json::array({"q_proj", "mlp.down_proj"});
  EXPECT_EQ(adapted_paths(config),
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                                      "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"}));
  config.target_modules = R"(.*layers\.1\.self_attn\.(k|v)_proj)";  // fullmatch on the path
  EXPECT_EQ(adapted_paths(config), (std::vector<std::string>{"model.layers.1.self_attn.k_proj",
                                                             "model.layers.1.self_attn.v_proj"}));
  config.target_modules = "k_proj";  // a string is a regex over the whole path: matches nothing
  EXPECT_THROW(adapted_paths(config), Error);
  config.target_modules = "all-linear";
  EXPECT_EQ(adapted_paths(config).size(), 14u);  // 7 per layer, never lm_head
  config.exclude_modules = nlohmann::json::array({"o_proj"});
  EXPECT_EQ(adapted_paths(config).size(), 12u);
}

TEST(TargetModules, MethodPatternAndPerLayerExperts) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.method_pattern = {{"q_proj", AdapterMethod::kLora}, {"v_proj", AdapterMethod::kLora}};
  config.target_modules = nlohmann::json::array({"q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"});
  config.layer_num_experts = {2, 6};
  AdaptedModel adapted(random_model(toy_config("llama")), config);
  for (const auto& a : adapted.adapted()) {
    const bool attention = a->path().find("self_attn") != std::string::npos;
    EXPECT_EQ(a->spec().method, attention ? AdapterMethod::kLora : AdapterMethod::kRemix) << a->path();
    if (!attention) {
      EXPECT_EQ(a->spec().num_experts, a->path().find("layers.0") != std::string::npos ? 2 : 6);
    }
  }
  EXPECT_EQ(adapted.block_routers().size(), 2u) << "one ReMix router per FFN block";
  config.layer_num_experts = {2};
  EXPECT_THROW(AdaptedModel(random_model(toy_config("llama")), config), Error);
  // One block, one router: top-k on gate_proj beside ReMix on up/down cannot share it.
  config.layer_num_experts = {};
  config.method_pattern = {{"gate_proj", AdapterMethod::kTopk}};
  EXPECT_THROW(AdaptedModel(random_model(toy_config("llama")), config), Error);
}

TEST(RoutingCapture, RecordsKExpertsPerRealTokenAndSequenceRoutingSharesOneChoice) {
  for (auto granularity : {RoutingGranularity::kToken, RoutingGranularity::kSequence}) {
    AdapterConfig config = adapter_config(AdapterMethod::kRemix);
    config.routing = granularity;
    config.target_modules = nlohmann::json::array({"gate_proj", "up_proj", "down_proj"});
    AdaptedModel adapted(random_model(toy_config("llama")), config);
    RoutingCapture capture;
    adapted.routing().capture = &capture;
    at::Tensor mask = at::tensor({1, 1, 1, 1, 0, 1, 1, 1, 1, 1}, at::kLong).view({2, 5});
    at::NoGradGuard no_grad;
    adapted.model().forward(random_ids(2, 5, 512, 1), mask);
    ASSERT_EQ(capture.sites.size(), 2u);
    const auto& record = capture.sites.at("model.layers.0.mlp.router");
    const int64_t items = granularity == RoutingGranularity::kToken ? 9 : 2;  // real tokens / rows
    EXPECT_EQ(record.weights[0].size(0), items);
    EXPECT_EQ(record.selected[0].sizes(), (std::vector<int64_t>{items, 2}));
    EXPECT_EQ(record.experts, config.num_experts);
    EXPECT_EQ(record.weights[0].sizes(), (std::vector<int64_t>{items, 2})) << "the k selected experts' weights";
    EXPECT_TRUE((record.weights[0] > 0).all().item<bool>()) << "each selected expert active";
  }
}

TEST(SequenceRouting, OneChoicePerRowThatPaddingCannotChange) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.routing = RoutingGranularity::kSequence;
  config.target_modules = nlohmann::json::array({"gate_proj", "up_proj", "down_proj"});
  AdaptedModel adapted(random_model(toy_config("llama")), config);
  at::Tensor mask = at::tensor({1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1}, at::kLong).view({2, 6});
  at::Tensor ids = random_ids(2, 6, 512, 4);
  at::NoGradGuard no_grad;
  auto gates = [&](const at::Tensor& input) {
    adapted.model().forward(input, mask);
    return adapted.block_routers()[1]->gate().view({2, 6, -1}).clone();  // layer 1's decision
  };
  at::Tensor first = gates(ids);
  for (int64_t row = 0; row < 2; ++row) {
    EXPECT_TRUE(at::equal(first[row], first[row][0].expand_as(first[row]))) << "row " << row;
  }
  at::Tensor changed = ids.clone();
  changed[0][4] = 17;  // padding positions of row 0
  changed[0][5] = 99;
  EXPECT_TRUE(at::equal(gates(changed), first));
}

}  // namespace
}  // namespace remora
