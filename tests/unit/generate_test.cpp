// Generation and sampling: cache equivalence, stopping, and the sampling filters' support.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "eval/generate.h"
#include "adapter_test_util.h"
#include "test_models.h"

namespace remora {
namespace {
using testing::random_model;
using testing::toy_config;

const std::vector<std::vector<int64_t>> kPrompts = {{5, 6, 7, 8}, {300}, {9, 10}};

TEST(Generate, CachedEqualsUncachedGreedy) {
  auto model = random_model(toy_config("qwen2"), 1, 0.3);
  GenerationOptions options;
  options.max_new_tokens = 10;
  auto cached = generate(*model, kPrompts, options);
  options.use_cache = false;
  EXPECT_EQ(cached, generate(*model, kPrompts, options));
  for (const auto& row : cached) EXPECT_EQ(row.size(), 10u);
}

TEST(Generate, StopsAfterEosAndKeepsIt) {
  auto model = random_model(toy_config("llama"), 1, 0.3);
  GenerationOptions options;
  options.max_new_tokens = 6;
  auto free_run = generate(*model, kPrompts, options);
  options.eos_token_ids = {free_run[0][2]};  // row 0 produces it third
  auto stopped = generate(*model, kPrompts, options);
  ASSERT_GE(stopped[0].size(), 1u);
  EXPECT_LE(stopped[0].size(), 3u);
  EXPECT_EQ(stopped[0].back(), free_run[0][2]);
  EXPECT_EQ(stopped[0], std::vector<int64_t>(free_run[0].begin(), free_run[0].begin() + stopped[0].size()));
}

TEST(Generate, SamplingIsReproducibleBySeed) {
  auto model = random_model(toy_config("llama"));
  GenerationOptions options;
  options.max_new_tokens = 8;
  options.sampling.temperature = 1.0;
  options.sampling.seed = 11;
  auto first = generate(*model, kPrompts, options);
  EXPECT_EQ(first, generate(*model, kPrompts, options));
  options.sampling.seed = 12;
  EXPECT_NE(first, generate(*model, kPrompts, options));
}

// Tokens drawn from `logits` over many trials.
std::set<int64_t> support(const at::Tensor& logits, const SamplingOptions& options) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(3);
  std::set<int64_t> seen;
  for (int i = 0; i < 400; ++i) {
    seen.insert(choose_next_tokens(logits.unsqueeze(0), options, generator).item<int64_t>());
  }
  return seen;
}

TEST(Sampling, FiltersKeepExactlyTheExpectedTokens) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (in a shuffled order).
  at::Tensor logits = at::tensor({0.15, 0.5, 0.05, 0.3}).log();
  SamplingOptions options;
  options.temperature = 1.0;
  EXPECT_EQ(support(logits, options), (std::set<int64_t>{0, 1, 2, 3}));
  options.top_k = 2;
  EXPECT_EQ(support(logits, options), (std::set<int64_t>{1, 3}));
  options.top_k = 0;
  options.top_p = 0.5;  // the first token alone reaches 0.5
  EXPECT_EQ(support(logits, options), (std::set<int64_t>{1}));
  options.top_p = 0.9;  // 0.5 + 0.3 < 0.9, so the third joins
  EXPECT_EQ(support(logits, options), (std::set<int64_t>{0, 1, 3}));
  options = SamplingOptions{};  // greedy
  EXPECT_EQ(support(logits, options), (std::set<int64_t>{1}));
}

TEST(Sampling, RejectsOutOfRangeOptions) {
  SamplingOptions options;
  options.top_p = 0;
  EXPECT_THROW(options.validate(), Error);
  options = SamplingOptions{};
  options.temperature = -1;
  EXPECT_THROW(options.validate(), Error);
}

TEST(Generate, RoutedAdaptersGiveTheSameTokensWithAndWithoutTheCache) {
  // Sequence routing must decide from the prompt in both modes; token routing per new token.
  for (auto granularity : {RoutingGranularity::kSequence, RoutingGranularity::kToken}) {
    AdapterConfig config = testing::adapter_config(AdapterMethod::kRemix);
    config.routing = granularity;
    config.target_modules = nlohmann::json::array({"gate_proj", "up_proj", "down_proj"});
    AdaptedModel adapted(random_model(toy_config("llama"), 1, 0.3), config);
    testing::randomize_b(adapted, 2, 1.0);
    GenerationOptions options;
    options.max_new_tokens = 8;
    auto cached = generate(adapted.model(), kPrompts, options);
    options.use_cache = false;
    EXPECT_EQ(cached, generate(adapted.model(), kPrompts, options));
  }
}

}  // namespace
}  // namespace remora
