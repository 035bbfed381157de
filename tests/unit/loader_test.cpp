// Saving and loading HF checkpoints: round trip, dtype conversion, and errors that name the tensor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_models.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::random_ids;
using testing::random_model;
using testing::toy_config;

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::scratch_path("loader_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Rewrites model.safetensors through `edit`.
  void edit_weights(const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
    const std::string path = (dir_ / "model.safetensors").string();
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    {
      SafetensorsFile file(path);
      for (const auto& entry : file.entries()) tensors.emplace_back(entry.name, file.load(entry.name));
    }
    edit(tensors);
    write_safetensors(path, tensors);
  }

  std::string message_of_load() {
    try {
      load_causal_lm(dir_.string(), at::kFloat);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  fs::path dir_;
};

TEST_F(LoaderTest, SaveThenLoadGivesIdenticalLogits) {
  auto model = random_model(toy_config("qwen3"));
  save_hf_checkpoint(*model, dir_.string());
  EXPECT_TRUE(fs::exists(dir_ / "generation_config.json"));
  auto loaded = load_causal_lm(dir_.string(), at::kFloat);
  at::Tensor ids = random_ids(2, 6, 512, 1);
  EXPECT_TRUE(at::equal(model->forward(ids, {}), loaded->forward(ids, {})));
}

TEST_F(LoaderTest, Bfloat16LoadRoundsTheFloat32Weights) {
  auto model = random_model(toy_config("llama"));
  save_hf_checkpoint(*model, dir_.string());
  auto loaded = load_causal_lm(dir_.string(), at::kBFloat16);
  // Copies, not references: named_parameters() returns a temporary dictionary (a reference into it
  // dangled, which made this test fail now and then).
  const at::Tensor original = model->named_parameters()["model.layers.1.mlp.up_proj.weight"];
  const at::Tensor converted = loaded->named_parameters()["model.layers.1.mlp.up_proj.weight"];
  EXPECT_EQ(converted.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(converted, original.to(at::kBFloat16)));
}

TEST_F(LoaderTest, MissingTensorIsNamed) {
  save_hf_checkpoint(*random_model(toy_config("llama")), dir_.string());
  edit_weights([](auto& tensors) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [](const auto& t) { return t.first == "model.layers.1.self_attn.k_proj.weight"; }),
                  tensors.end());
  });
  EXPECT_THAT(message_of_load(), HasSubstr("no tensor 'model.layers.1.self_attn.k_proj.weight'"));
}

TEST_F(LoaderTest, WrongShapeIsNamed) {
  save_hf_checkpoint(*random_model(toy_config("llama")), dir_.string());
  edit_weights([](auto& tensors) {
    for (auto& [name, tensor] : tensors) {
      if (name == "model.norm.weight") tensor = at::ones({63});
    }
  });
  const std::string message = message_of_load();
  EXPECT_THAT(message, HasSubstr("'model.norm.weight'"));
  EXPECT_THAT(message, HasSubstr("[63]"));
}

TEST_F(LoaderTest, TensorTheArchitectureDoesNotUseIsNamed) {
  // Qwen3 weights (with q_norm) under a config that says qwen2.
  save_hf_checkpoint(*random_model(toy_config("qwen3", {{"attention_bias", true}})), dir_.string());
  nlohmann::json config = toy_config("qwen2", {{"head_dim", 32}});
  std::ofstream(dir_ / "config.json") << config.dump();
  EXPECT_THAT(message_of_load(), HasSubstr("_norm.weight' is not part of a qwen2 model"));
}

TEST_F(LoaderTest, MissingConfigIsNamed) {
  EXPECT_THAT(message_of_load(), HasSubstr("config.json"));
}

}  // namespace
}  // namespace remora
