// Decoder features checked by properties that hold only if the feature is implemented right.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/rope.h"
#include "test_models.h"

namespace remora {
namespace {

using testing::copy_shared_parameters;
using testing::random_ids;
using testing::random_model;
using testing::toy_config;

void expect_close(const at::Tensor& a, const at::Tensor& b, double tolerance = 1e-5) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LT((a - b).abs().max().item<double>(), tolerance);
}

TEST(Decoder, GroupedQueryAttentionEqualsMultiHeadWithRepeatedKvHeads) {
  auto gqa = random_model(toy_config("llama"));  // 4 query heads, 2 KV heads
  auto mha = random_model(toy_config("llama", {{"num_key_value_heads", 4}}), 2);
  copy_shared_parameters(*gqa, *mha);
  const int64_t head_dim = gqa->config().head_dim;
  at::NoGradGuard no_grad;
  for (int64_t i = 0; i < gqa->config().num_layers; ++i) {
    auto& source = *gqa->model->layers[i]->as<DecoderLayer>()->self_attn;
    auto& target = *mha->model->layers[i]->as<DecoderLayer>()->self_attn;
    for (auto [from, to] : {std::pair{source.k_proj, target.k_proj}, {source.v_proj, target.v_proj}}) {
      // KV head h serves query heads 2h and 2h+1.
      at::Tensor heads = from->named_parameters()["weight"].view({2, head_dim, -1});
      to->named_parameters()["weight"].copy_(heads.repeat_interleave(2, 0).reshape({4 * head_dim, -1}));
    }
  }
  at::Tensor ids = random_ids(2, 9, 512, 3);
  expect_close(gqa->forward(ids, {}), mha->forward(ids, {}));
}

TEST(Decoder, Qwen2AddsQkvBiasesButNoOutputBias) {
  auto qwen = random_model(toy_config("qwen2"));
  auto params = qwen->named_parameters();
  EXPECT_TRUE(params.contains("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(params.contains("model.layers.0.self_attn.v_proj.bias"));
  EXPECT_FALSE(params.contains("model.layers.0.self_attn.o_proj.bias"));

  // With zero biases Qwen2 is a tied Llama with the same theta; a bias then changes the output.
  auto llama = random_model(toy_config("llama", {{"tie_word_embeddings", true},
                                                 {"rope_theta", 1000000.0},
                                                 {"rms_norm_eps", 1e-6}}), 2);
  copy_shared_parameters(*qwen, *llama);
  at::Tensor ids = random_ids(1, 7, 512, 4);
  {
    at::NoGradGuard no_grad;
    for (auto& item : qwen->named_parameters()) {
      if (item.key().find(".bias") != std::string::npos) item.value().zero_();
    }
  }
  expect_close(qwen->forward(ids, {}), llama->forward(ids, {}));
  {
    at::NoGradGuard no_grad;
    params["model.layers.0.self_attn.v_proj.bias"].fill_(0.5);
  }
  EXPECT_GT((qwen->forward(ids, {}) - llama->forward(ids, {})).abs().max().item<double>(), 1e-3);
}

TEST(Decoder, Qwen3QkNormMakesAttentionInvariantToQueryScale) {
  // q_norm normalises each query head, so scaling q_proj cannot change Qwen3's output; it does
  // change Llama's.
  for (const std::string arch : {"qwen3", "llama"}) {
    auto model = random_model(toy_config(arch));
    at::Tensor ids = random_ids(1, 8, 512, 5);
    at::Tensor before = model->forward(ids, {});
    {
      at::NoGradGuard no_grad;
      model->named_parameters()["model.layers.0.self_attn.q_proj.weight"].mul_(7.0);
    }
    const double change = (model->forward(ids, {}) - before).abs().max().item<double>();
    if (arch == "qwen3") {
      EXPECT_LT(change, 1e-4) << arch;
    } else {
      EXPECT_GT(change, 1e-3) << arch;
    }
  }
}

TEST(Decoder, Qwen3UsesExplicitHeadDim) {
  auto model = random_model(toy_config("qwen3"));
  EXPECT_EQ(model->config().head_dim, 32);  // hidden 64 / 4 heads would be 16
  EXPECT_EQ(model->named_parameters()["model.layers.0.self_attn.q_proj.weight"].size(0), 4 * 32);
  EXPECT_EQ(model->named_parameters()["model.layers.0.self_attn.q_norm.weight"].size(0), 32);
}

TEST(Decoder, TiedHeadUsesTheEmbeddingMatrix) {
  auto model = random_model(toy_config("llama", {{"tie_word_embeddings", true}}));
  EXPECT_EQ(model->lm_head, nullptr);
  EXPECT_FALSE(model->named_parameters().contains("lm_head.weight"));
  at::Tensor ids = random_ids(1, 5, 512, 6);
  at::Tensor hidden = model->hidden_states(ids, {});
  expect_close(model->logits(hidden), at::matmul(hidden, model->model->embed_tokens->weight.t()));
}

TEST(Rope, Llama3ScalingMatchesTheFormulaBandByBand) {
  auto config = ModelConfig::from_json(
      toy_config("llama", {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0},
                                             {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                             {"original_max_position_embeddings", 64}}}}),
      "test");
  at::Tensor actual = rope_inverse_frequencies(config);
  const int64_t dim = config.head_dim;
  int bands[3] = {0, 0, 0};
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double f = 1.0 / std::pow(500000.0, 2.0 * i / dim);
    const double wavelength = 2 * M_PI / f;
    double expected;
    if (wavelength < 64 / 4.0) {
      expected = f, ++bands[0];
    } else if (wavelength > 64 / 1.0) {
      expected = f / 8.0, ++bands[2];
    } else {
      const double smooth = (64 / wavelength - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * f / 8.0 + smooth * f, ++bands[1];
    }
    EXPECT_NEAR(actual[i].item<double>(), expected, 1e-6 * expected) << "frequency " << i;
  }
  for (int band : bands) EXPECT_GT(band, 0) << "the test should cover all three bands";
}

TEST(Rope, LinearScalingDividesFrequencies) {
  auto plain = ModelConfig::from_json(toy_config("llama"), "test");
  auto linear = ModelConfig::from_json(
      toy_config("llama", {{"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}}), "test");
  expect_close(rope_inverse_frequencies(linear), rope_inverse_frequencies(plain) / 4.0, 1e-9);
}

TEST(Rope, AttentionScoreDependsOnlyOnRelativePosition) {
  auto config = ModelConfig::from_json(toy_config("llama"), "test");
  at::Tensor inverse = rope_inverse_frequencies(config);
  at::Tensor q = at::randn({1, 1, 1, config.head_dim}), k = at::randn({1, 1, 1, config.head_dim});
  auto score = [&](int64_t qpos, int64_t kpos) {
    auto [qc, qs] = rope_tables(inverse, at::full({1, 1}, qpos, at::kLong));
    auto [kc, ks] = rope_tables(inverse, at::full({1, 1}, kpos, at::kLong));
    return (apply_rope(q, qc, qs) * apply_rope(k, kc, ks)).sum().item<double>();
  };
  EXPECT_NEAR(score(10, 7), score(103, 100), 1e-4);
  EXPECT_GT(std::abs(score(10, 7) - score(10, 2)), 1e-4);
}

TEST(Decoder, PaddingOnEitherSideLeavesRealTokensUnchanged) {
  auto model = random_model(toy_config("qwen2"));
  at::Tensor ids = random_ids(1, 6, 512, 7);
  at::Tensor alone = model->forward(ids, {})[0];
  at::Tensor pad = at::full({1, 3}, 0, at::kLong);
  at::Tensor right = at::cat({ids, pad}, 1), left = at::cat({pad, ids}, 1);
  at::Tensor right_mask = at::cat({at::ones({1, 6}, at::kLong), at::zeros({1, 3}, at::kLong)}, 1);
  at::Tensor left_mask = right_mask.flip(1);
  expect_close(model->forward(right, right_mask)[0].narrow(0, 0, 6), alone);
  expect_close(model->forward(left, left_mask)[0].narrow(0, 3, 6), alone);
}

TEST(Decoder, CachedChunksEqualOneFullForward) {
  auto model = random_model(toy_config("llama", {{"model_type", "mistral"}, {"sliding_window", 3}}));
  at::Tensor ids = random_ids(2, 10, 512, 8);
  at::Tensor full = model->forward(ids, {});
  KVCache cache(model->config().num_layers, 10);
  at::Tensor first = model->forward(ids.narrow(1, 0, 6), {}, &cache);
  at::Tensor second = model->forward(ids.narrow(1, 6, 4), {}, &cache);
  EXPECT_EQ(cache.length, 10);
  expect_close(at::cat({first, second}, 1), full);
}

TEST(Decoder, Bfloat16DecodeStepsFollowTheFullForwardWithPaddingAndASlidingWindow) {
  // One-position bf16 steps go through the decode kernels (attention over the cache, RoPE, RMSNorm,
  // projections); the full forward through the blocked attention. Both round in bf16, differently.
  auto model = random_model(toy_config("llama", {{"model_type", "mistral"}, {"sliding_window", 3}}), 1, 0.2);
  model->to(at::kBFloat16);
  at::Tensor ids = random_ids(2, 10, 512, 9);
  at::Tensor mask = at::ones({2, 10}, at::kLong);
  mask[1].narrow(0, 0, 3).fill_(0);  // row 1 is left-padded
  at::Tensor full = model->forward(ids, mask);
  KVCache cache(model->config().num_layers, 10);
  std::vector<at::Tensor> steps = {model->forward(ids.narrow(1, 0, 4), mask.narrow(1, 0, 4), &cache)};
  for (int64_t t = 4; t < 10; ++t) steps.push_back(model->forward(ids.narrow(1, t, 1), mask.narrow(1, t, 1), &cache));
  at::Tensor cached = at::cat(steps, 1);
  // Compare the real tokens' logits; a few bf16 roundings apart, against logits of order one.
  at::Tensor real = mask.to(at::kBool).unsqueeze(-1).expand_as(full);
  const double error = (cached - full).abs().masked_select(real).max().item<double>();
  const double scale = full.abs().masked_select(real).max().item<double>();
  EXPECT_LT(error, 0.03 * scale) << "largest logit " << scale;  // measured 0.078 of 6.5; no mask: 8.2
}

TEST(Decoder, BaseWeightsAreFrozen) {
  auto model = random_model(toy_config("llama"));
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.requires_grad());
}

}  // namespace
}  // namespace remora
