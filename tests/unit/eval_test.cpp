// Evaluation building blocks: batched = one-at-a-time generation, target scoring, routing statistics,
// metrics-log reading and the HTML embedding.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/generate.h"
#include "eval/loglikelihood.h"
#include "eval/routing_report.h"
#include "eval/routing_stats.h"
#include "adapter_test_util.h"
#include "test_models.h"

namespace remora {
namespace {
using testing::random_model;
using testing::toy_config;

const std::vector<std::vector<int64_t>> kPrompts = {{5, 6, 7, 8, 9, 10, 11}, {300}, {9, 10}, {42, 43, 44}};

void expect_batched_equals_alone(CausalLM& model, const std::string& what) {
  GenerationOptions options;
  options.max_new_tokens = 8;
  const auto batched = generate(model, kPrompts, options);
  for (size_t row = 0; row < kPrompts.size(); ++row) {
    EXPECT_EQ(batched[row], generate(model, {kPrompts[row]}, options)[0]) << what << ", prompt " << row;
  }
}

TEST(BatchedGeneration, EqualsOneAtATimeWithoutAnAdapter) {
  auto model = random_model(toy_config("qwen2"), 1, 0.3);
  expect_batched_equals_alone(*model, "base");
}

TEST(BatchedGeneration, EqualsOneAtATimeWithEveryRoutedAdapter) {
  for (AdapterMethod method : {AdapterMethod::kMolora, AdapterMethod::kTopk, AdapterMethod::kHydra,
                               AdapterMethod::kRemix, AdapterMethod::kSmora}) {
    for (auto granularity : {RoutingGranularity::kToken, RoutingGranularity::kSequence}) {
      if (granularity == RoutingGranularity::kSequence && method != AdapterMethod::kRemix) continue;
      AdapterConfig config = testing::adapter_config(method);
      config.routing = granularity;
      AdaptedModel adapted(random_model(toy_config("llama"), 1, 0.3), config);
      testing::randomize_b(adapted, 2, 1.0);
      expect_batched_equals_alone(adapted.model(), std::string(method_name(method)));
    }
  }
}

TEST(BatchedGeneration, SampledDrawsDependOnThePromptsStreamNotOnTheBatch) {
  auto model = random_model(toy_config("llama"), 1, 0.3);
  GenerationOptions options;
  options.max_new_tokens = 8;
  options.sampling.temperature = 1.0;
  options.sampling.seed = 5;
  const auto batched = generate(*model, kPrompts, options);
  for (size_t row = 0; row < kPrompts.size(); ++row) {
    GenerationOptions alone = options;
    alone.row_streams = {row};
    EXPECT_EQ(batched[row], generate(*model, {kPrompts[row]}, alone)[0]) << "prompt " << row;
  }
  // The same prompt twice in one batch: two streams, two different samples.
  const auto twins = generate(*model, {kPrompts[0], kPrompts[0]}, options);
  EXPECT_NE(twins[0], twins[1]);
}

// Σ log p(target tokens) computed from one full forward per example, without batching.
double direct_log_likelihood(CausalLM& model, const TrainingExample& example) {
  at::NoGradGuard no_grad;
  at::Tensor ids = at::tensor(example.ids).unsqueeze(0);
  at::Tensor log_probs = model.forward(ids, at::ones_like(ids)).log_softmax(-1)[0];  // [T, V]
  double total = 0;
  for (size_t t = 1; t < example.ids.size(); ++t) {
    if (example.target[t]) total += log_probs[t - 1][example.ids[t]].item<double>();
  }
  return total;
}

TEST(ScoreTargets, MatchesAFullForwardPerExampleAtAnyBatchSize) {
  auto model = random_model(toy_config("llama"), 3, 0.3);
  std::vector<TrainingExample> examples(3);
  examples[0].ids = {1, 2, 3, 4, 5, 6};
  examples[0].target = {0, 0, 0, 1, 1, 1};
  examples[1].ids = {7, 8};
  examples[1].target = {0, 1};
  examples[2].ids = {9, 10, 11, 12};
  examples[2].target = {0, 1, 0, 1};  // targets need not be contiguous
  for (int64_t batch : {1, 2, 3}) {
    const auto scores = score_targets(*model, examples, batch);
    ASSERT_EQ(scores.size(), 3u);
    for (size_t i = 0; i < examples.size(); ++i) {
      EXPECT_NEAR(scores[i].log_likelihood, direct_log_likelihood(*model, examples[i]), 1e-4) << "batch " << batch;
      EXPECT_EQ(scores[i].tokens, i == 0 ? 3 : i == 1 ? 1 : 2);
    }
  }
}

TEST(ScoreTargets, GreedyMeansEveryTargetIsTheArgmax) {
  auto model = random_model(toy_config("llama"), 3, 0.3);
  at::NoGradGuard no_grad;
  // Continue a prompt greedily: those tokens are the argmax by construction; then spoil one.
  GenerationOptions options;
  options.max_new_tokens = 4;
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  const auto continuation = generate(*model, {prompt}, options)[0];
  TrainingExample example;
  example.ids = prompt;
  example.ids.insert(example.ids.end(), continuation.begin(), continuation.end());
  example.target.assign(example.ids.size(), 0);
  std::fill(example.target.begin() + prompt.size(), example.target.end(), 1);
  EXPECT_TRUE(score_targets(*model, {example}, 1)[0].greedy);
  example.ids.back() = (example.ids.back() + 1) % model->config().vocab_size;
  EXPECT_FALSE(score_targets(*model, {example}, 1)[0].greedy);
}

TEST(ScoreTargets, SequenceRoutingFromTheContextScoresWhatGenerationProduced) {
  // Generation routes a sequence-level router from the prompt; scoring routes from the example's
  // prompt too, so every greedily generated token is again the argmax.
  AdapterConfig config = testing::adapter_config(AdapterMethod::kRemix);
  config.routing = RoutingGranularity::kSequence;
  config.target_modules = nlohmann::json::array({"gate_proj", "up_proj", "down_proj"});
  AdaptedModel adapted(random_model(toy_config("llama"), 1, 0.3), config);
  testing::randomize_b(adapted, 2, 1.0);
  GenerationOptions options;
  options.max_new_tokens = 12;
  for (const auto& prompt : kPrompts) {
    const auto continuation = generate(adapted.model(), {prompt}, options)[0];
    TrainingExample example;
    example.ids = prompt;
    example.ids.insert(example.ids.end(), continuation.begin(), continuation.end());
    example.target.assign(example.ids.size(), 0);
    std::fill(example.target.begin() + prompt.size(), example.target.end(), 1);
    example.prompt_length = static_cast<int64_t>(prompt.size());
    EXPECT_TRUE(score_targets(adapted.model(), {example}, 1)[0].greedy);
  }
}

TEST(ScoreTargets, IdsOutsideTheVocabularyAreAnErrorNotACrash) {
  auto model = random_model(toy_config("llama"), 3, 0.3);
  TrainingExample example;
  example.ids = {1, model->config().vocab_size};
  example.target = {0, 1};
  EXPECT_THROW(score_targets(*model, {example}, 1), Error);
  EXPECT_THROW(generate(*model, {{1, -1}}, GenerationOptions{}), Error);
}

TEST(RoutingStats, HandMadeGatesGiveKnownEssLoadAndHistograms) {
  RoutingCapture capture;
  // ESS: one-hot 1, two equal 2, four equal 4; the largest weight's share 1, 0.5, 0.25.
  capture.add("model.layers.10.mlp.router",
              Gate{at::tensor({1.f, 0.f, 0.f, 0.f, 0.5f, 0.5f, 0.f, 0.f, 0.25f, 0.25f, 0.25f, 0.25f}).view({3, 4})},
              at::ones({3}, at::kBool));
  capture.add("model.layers.2.mlp.router", Gate{at::tensor({0.f, 3.f, 0.f, 0.f}).view({1, 4})}, at::ones({1}, at::kBool));
  const auto stats = routing_stats(capture);
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].layer, 2);  // layer order, not string order
  const SiteRoutingStats& s = stats[1];
  EXPECT_EQ(s.layer, 10);
  EXPECT_EQ(s.tokens, 3);
  EXPECT_EQ(s.num_experts, 4);
  EXPECT_EQ(s.active_experts, 4);  // dense: nothing selected
  EXPECT_NEAR(s.mean_ess, 7.0 / 3, 1e-6);
  EXPECT_NEAR(s.min_ess, 1, 1e-6);
  EXPECT_NEAR(s.max_ess, 4, 1e-6);
  EXPECT_NEAR(s.mean_top_weight, (1 + 0.5 + 0.25) / 3, 1e-6);
  EXPECT_FALSE(s.entropy.has_value());
  // Weight shares per expert, averaged over tokens.
  EXPECT_NEAR(s.load[0], (1 + 0.5 + 0.25) / 3, 1e-6);
  EXPECT_NEAR(s.load[3], 0.25 / 3, 1e-6);
  // ESS bins (a, b] over [1, 4]: 12 bins of 0.25; 1 in the first (closed) bin, 2 in (1.75, 2], 4 in the last.
  ASSERT_EQ(s.ess_histogram.counts.size(), 12u);
  EXPECT_EQ(s.ess_histogram.counts[0], 1);
  EXPECT_EQ(s.ess_histogram.counts[3], 1);
  EXPECT_EQ(s.ess_histogram.counts[11], 1);
  EXPECT_DOUBLE_EQ(s.ess_histogram.edges[4], 2.0);
  // Top weight bins of 0.05 over [0, 1]: 0.25 in (0.2, 0.25], 0.5 in (0.45, 0.5], 1 in the last.
  EXPECT_EQ(s.top_weight_histogram.counts[4], 1);
  EXPECT_EQ(s.top_weight_histogram.counts[9], 1);
  EXPECT_EQ(s.top_weight_histogram.counts[19], 1);
  // Every router shares the bin layout: the one-token router in layer 2 too.
  EXPECT_EQ(stats[0].ess_histogram.edges, s.ess_histogram.edges);
}

TEST(RoutingStats, SelectedExpertsGiveCountLoadAndDistinctSubsets) {
  RoutingCapture capture;
  const std::string site = "model.layers.0.mlp.router";
  const float w = 0.125f;
  // Three tokens with equal constant weights on their two experts (ESS exactly k = 2) and a padding
  // token between them that is not counted; sigmoid-style scores, whose entropy is taken normalised ...
  capture.add(site,
              Gate{at::tensor({w, w, 0.f, 0.f, 9.f, 0.f, 0.f, 0.f, 0.f, w, w, 0.f, w, w, 0.f, 0.f}).view({4, 4}),
                   at::full({4, 4}, 0.5f), at::tensor(std::vector<int64_t>{1, 0, 0, 1, 1, 2, 0, 1}).view({4, 2})},
              at::tensor({1, 0, 1, 1}).to(at::kBool));
  // ... and one whose second selected expert's weight underflowed to 0: ESS 1, but both count as load.
  capture.add(site,
              Gate{at::tensor({0.f, 0.f, 0.f, w}).view({1, 4}), at::full({1, 4}, 0.5f),
                   at::tensor(std::vector<int64_t>{3, 2}).view({1, 2})},
              at::ones({1}, at::kBool));
  // Only the selected experts' weights are kept, in selection order.
  EXPECT_TRUE(at::equal(capture.sites.at(site).weights[0], at::tensor({w, w, w, w, w, w}).view({3, 2})));
  EXPECT_TRUE(at::equal(capture.sites.at(site).weights[1], at::tensor({w, 0.f}).view({1, 2})));
  const auto s = routing_stats(capture).at(0);
  EXPECT_EQ(s.active_experts, 2);
  EXPECT_EQ(s.tokens, 4);
  EXPECT_EQ(s.max_ess, 2.0);
  EXPECT_EQ(s.min_ess, 1.0);
  EXPECT_NEAR(s.mean_ess, 1.75, 1e-6);
  EXPECT_EQ(s.distinct_subsets, 3);  // {0,1} twice (in either order), {1,2}, {2,3}
  EXPECT_EQ(s.load, (std::vector<double>{0.5, 0.75, 0.5, 0.25}));  // sums to k
  EXPECT_NEAR(*s.entropy, std::log(4.0), 1e-6);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(TrainingCurves, ReadsLossValidationAndPerSiteEss) {
  const std::string path = write_temp(
      "remora_curves_test.jsonl",
      R"({"step":10,"loss":2.5,"routing":[{"site":"model.layers.1.mlp.router","mean_ess":1.9},{"site":"model.layers.0.mlp.router","mean_ess":2.0}]})"
      "\n"
      R"({"step":20,"validation_loss":2.2})"
      "\n\n"
      R"({"step":20,"loss":2.0,"routing":[{"site":"model.layers.1.mlp.router","mean_ess":1.4},{"site":"model.layers.0.mlp.router","mean_ess":2.0}]})"
      "\n");
  const TrainingCurves curves = read_training_curves(path, "run");
  EXPECT_EQ(curves.steps, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(curves.loss, (std::vector<double>{2.5, 2.0}));
  EXPECT_EQ(curves.validation_steps, (std::vector<int64_t>{20}));
  ASSERT_EQ(curves.sites.size(), 2u);
  EXPECT_EQ(curves.sites[0].layer, 0);
  EXPECT_EQ(curves.sites[1].mean_ess, (std::vector<double>{1.9, 1.4}));
}

TEST(TrainingCurves, AHalfWrittenLastLineOfARunningTrainingIsSkipped) {
  const std::string path = write_temp("remora_curves_running.jsonl", "{\"step\":1,\"loss\":1.5}\n{\"step\":2,\"lo");
  const TrainingCurves curves = read_training_curves(path, "run");
  EXPECT_EQ(curves.steps, (std::vector<int64_t>{1}));
}

TEST(TrainingCurves, ABadLineNamesFileAndLine) {
  const std::string path = write_temp("remora_curves_bad.jsonl", "{\"step\":1,\"loss\":1}\nnot json\n");
  try {
    read_training_curves(path, "run");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2:"), std::string::npos) << e.what();
  }
}

TEST(RoutingReportHtml, EmbedsTheJsonWithEveryLessThanEscaped) {
  const nlohmann::json report = {{"title", "t"}, {"dataset", "a</script><!--b"}, {"adapters", nlohmann::json::array()}};
  const std::string page = render_html(report);
  EXPECT_EQ(page.find("__REMORA_REPORT_DATA__"), std::string::npos);
  EXPECT_EQ(page.find("a</script>"), std::string::npos);
  EXPECT_NE(page.find(R"("a\u003c/script>\u003c!--b")"), std::string::npos);
  EXPECT_NE(page.find("<!DOCTYPE html>"), std::string::npos);
}

}  // namespace
}  // namespace remora
