// remora compose's adapters: existing LoRAs as experts, reproduced exactly when routed one-hot.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <filesystem>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "adapters/compose.h"
#include "adapters/routers/routers.h"
#include "core/error.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using namespace remora::testing;
using ::testing::HasSubstr;

class Compose : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::scratch_path("compose_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    // Two LoRAs of different ranks, scalings and targets, as users download them.
    AdapterConfig wide = adapter_config(AdapterMethod::kLora);
    wide.r = 4, wide.lora_alpha = 8;
    AdapterConfig narrow = adapter_config(AdapterMethod::kRslora);
    narrow.r = 2, narrow.lora_alpha = 3, narrow.target_modules = nlohmann::json::array({"q_proj", "down_proj"});
    for (const auto& [name, config, seed] : {std::tuple{"wide", wide, 1}, std::tuple{"narrow", narrow, 2}}) {
      AdaptedModel adapted(base(), config, seed);
      randomize_b(adapted, 10 + seed, 0.3);
      save_adapter(adapted, (dir_ / name).string());
      experts_.push_back({name, (dir_ / name).string()});
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::shared_ptr<CausalLM> base() { return random_model(toy_config("llama"), 5); }
  static AdapterConfig routing(AdapterMethod method) {
    AdapterConfig c;
    c.method = method;
    c.top_k = 1;
    c.freeze_experts = true;
    c.retrieval_layer = 1;
    return c;
  }
  // Logits of the base with expert `i` alone, loaded as its own folder.
  at::Tensor alone(size_t i) {
    auto adapted = load_adapter(base(), experts_[i].dir);
    at::NoGradGuard no_grad;
    return adapted->model().forward(ids_, mask_);
  }

  fs::path dir_;
  std::vector<ExpertFolder> experts_;
  at::Tensor ids_ = random_ids(2, 7, 512, 9);
  at::Tensor mask_ = at::tensor({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, at::kLong).view({2, 7});
};

double max_difference(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST_F(Compose, LoraFlowGateForcedOneHotReproducesEachLora) {
  auto composed = compose_adapter(base(), experts_, routing(AdapterMethod::kLoraflow));
  for (size_t expert = 0; expert < 2; ++expert) {
    // W = 0 gives softmax 1/2 each; a bias of +-1/2 turns that into exactly (1, 0) or (0, 1).
    {
      at::NoGradGuard no_grad;
      for (const auto& [path, router] : composed->routers()) {
        auto gate = std::dynamic_pointer_cast<LoraFlowRouter>(router);
        ASSERT_TRUE(gate);
        gate->weight.zero_();
        gate->bias.copy_(expert == 0 ? at::tensor({0.5f, -0.5f}) : at::tensor({-0.5f, 0.5f}));
      }
    }
    at::NoGradGuard no_grad;
    const at::Tensor expected = alone(expert);
    EXPECT_LT(max_difference(composed->model().forward(ids_, mask_), expected), 1e-5) << experts_[expert].name;
  }
}

TEST_F(Compose, RetrievalRoutesEachPromptToTheNearestCentroidAndReproducesThatLora) {
  auto composed = compose_adapter(base(), experts_, routing(AdapterMethod::kRetrieval));
  const at::Tensor embedding = composed->embed_prompts(ids_, mask_);  // [2, D]
  ASSERT_EQ(embedding.sizes(), (std::vector<int64_t>{2, 64}));
  for (size_t expert = 0; expert < 2; ++expert) {
    // Expert `expert`'s centroid points where both prompts do, the other's away from them.
    at::Tensor toward = embedding.mean(0);
    set_retrieval_centroids(*composed, expert == 0 ? at::stack({toward, -toward}) : at::stack({-toward, toward}));
    at::NoGradGuard no_grad;
    EXPECT_LT(max_difference(composed->model().forward(ids_, mask_), alone(expert)), 1e-5) << experts_[expert].name;
  }
  // The embedding is the base model's (adapters bypassed), whatever the experts hold.
  randomize_b(*composed, 99, 1.0);
  EXPECT_TRUE(at::equal(composed->embed_prompts(ids_, mask_), embedding));
}

TEST_F(Compose, ExpertsKeepTheirFactorsAndOnlyRoutersTrain) {
  auto composed = compose_adapter(base(), experts_, routing(AdapterMethod::kTopk));
  const auto& layers = composed->adapted();
  // q_proj has both experts (ranks 4 + 2), v_proj only the wide one.
  auto q = std::find_if(layers.begin(), layers.end(), [](const auto& l) { return l->path() == "model.layers.0.self_attn.q_proj"; });
  auto v = std::find_if(layers.begin(), layers.end(), [](const auto& l) { return l->path() == "model.layers.0.self_attn.v_proj"; });
  ASSERT_NE(q, layers.end());
  ASSERT_NE(v, layers.end());
  EXPECT_EQ((*q)->lora_A.size(0), 6);
  EXPECT_EQ((*v)->lora_A.size(0), 4);
  auto narrow = load_adapter(base(), experts_[1].dir);
  for (const auto& layer : narrow->adapted()) {
    if (layer->path() != (*q)->path()) continue;
    EXPECT_TRUE(at::equal((*q)->lora_A.narrow(0, 4, 2), layer->lora_A));
    EXPECT_TRUE(at::equal((*q)->lora_B.narrow(1, 4, 2), layer->lora_B));
  }
  for (const auto& t : composed->adapter_parameters()) EXPECT_FALSE(t.requires_grad());
  for (const auto& t : composed->router_parameters()) EXPECT_TRUE(t.requires_grad());
  EXPECT_EQ(composed->trainable_parameter_count(), [&] {
    int64_t n = 0;
    for (const auto& t : composed->router_parameters()) n += t.numel();
    return n;
  }());
}

TEST_F(Compose, SavedComposedAdapterLoadsBitExact) {
  auto composed = compose_adapter(base(), experts_, routing(AdapterMethod::kRemix));
  save_adapter(*composed, (dir_ / "composed").string());
  auto loaded = load_adapter(base(), (dir_ / "composed").string());
  EXPECT_EQ(loaded->config().experts.size(), 2u);
  EXPECT_TRUE(loaded->config().freeze_experts);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(composed->model().forward(ids_, mask_), loaded->model().forward(ids_, mask_)));
}

TEST_F(Compose, RefusesExpertsThatAreNotPlainLorasOfThisBase) {
  AdapterConfig remix = adapter_config(AdapterMethod::kRemix);
  AdaptedModel routed(base(), remix);
  save_adapter(routed, (dir_ / "remix").string());
  auto with = [&](ExpertFolder extra) {
    std::vector<ExpertFolder> list = {experts_[0], extra};
    try {
      compose_adapter(base(), list, routing(AdapterMethod::kMolora));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(with({"remix", (dir_ / "remix").string()}), HasSubstr("expert 'remix' is a remix adapter"));
  AdaptedModel other_shape(random_model(toy_config("llama", {{"hidden_size", 32}, {"intermediate_size", 48}})),
                           adapter_config(AdapterMethod::kLora));
  save_adapter(other_shape, (dir_ / "other").string());
  EXPECT_THAT(with({"other", (dir_ / "other").string()}), HasSubstr("has shape"));
  EXPECT_THAT(with({"missing", (dir_ / "missing").string()}), HasSubstr("adapter_config.json: missing"));
}

}  // namespace
}  // namespace remora
