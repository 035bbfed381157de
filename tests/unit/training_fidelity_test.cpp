// What the trainer optimises is what each method defines (shared/spec/methods.md): ReMix's factor
// and router gradients, routing decisions that never look at the response, ReMix routers under any
// top-level method, the pooled top-k balance loss, separate router clipping, the router-objective
// ablations, and SMoRA as its authors' code runs it.
#include <gtest/gtest.h>

#include <cmath>

#include "adapter_test_util.h"
#include "adapters/routers/routers.h"
#include "core/error.h"
#include "eval/loglikelihood.h"
#include "train/batching.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/rloo.h"

namespace remora {
namespace {
using namespace remora::testing;

std::vector<at::Tensor> take_grads(const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters) {
    grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    p.mutable_grad() = at::Tensor();
  }
  return grads;
}

void expect_all_close(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::allclose(a[i], b[i], 1e-4, 1e-6))
        << what << " " << i << ": max difference " << (a[i] - b[i]).abs().max().item<double>();
  }
}

// --- 1. ReMix: factors get the gradient of mean_m L_m, routers the RLOO term alone ---------------

TEST(RemixGradients, FactorsGetTheMeanLossGradientAndRoutersTheRlooTermAlone) {
  // ReMix on every projection of a 2-layer model: 4 routed blocks, each router fed by the adapters
  // before it (earlier blocks, and the attention adapters before the MLP router).
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
  randomize_b(adapted, 3, 0.5);
  adapted.set_training(true);
  const auto examples = examples_of({9, 7, 8}, 3, 20);
  const Batch batch = collate(examples, {0, 1, 2}, 0);
  const int64_t M = 3, B = 3;
  const double step_tokens = static_cast<double>(batch.target_tokens);

  // The trainer's objective, with selections drawn from generator seed 7.
  adapted.routing().generator = at::make_generator<at::CPUGeneratorImpl>(7);
  micro_batch_objective(adapted.model(), &adapted, batch, step_tokens, M, 1).objective.backward();
  const auto factors = take_grads(adapted.adapter_parameters());
  const auto routers = take_grads(adapted.router_parameters());

  // The same selections again (same seed), split into the two terms of spec section 3.
  adapted.routing().generator = at::make_generator<at::CPUGeneratorImpl>(7);
  adapted.routing().reset();
  auto [sums, tokens] = row_losses(adapted.model(), batch.ids.repeat({M, 1}), batch.attention.repeat({M, 1}),
                                   batch.target_mask.repeat({M, 1}), batch.routing_mask.repeat({M, 1}));
  at::Tensor input_tokens = tokens.view({M, B})[0];
  at::Tensor losses = sums.view({M, B}) / input_tokens;        // L_mb
  at::Tensor weights = input_tokens / step_tokens;             // each input's share of the step
  at::Tensor mean_loss = (losses.mean(0) * weights).sum();     // sum_b w_b mean_m L_mb
  at::Tensor advantage = (losses - losses.mean(0, true)).detach() / (M - 1);
  at::Tensor rloo_term = ((advantage * adapted.routing().log_prob.view({M, B})).sum(0) * weights).sum();

  mean_loss.backward({}, /*retain_graph=*/true);
  expect_all_close(factors, take_grads(adapted.adapter_parameters()), "factor gradient");
  const auto routers_from_loss = take_grads(adapted.router_parameters());
  for (const auto& g : routers_from_loss) EXPECT_EQ(g.abs().max().item<double>(), 0.0) << "constant weights";

  rloo_term.backward();
  expect_all_close(routers, take_grads(adapted.router_parameters()), "router gradient");
  for (const auto& g : take_grads(adapted.adapter_parameters())) {
    EXPECT_EQ(g.abs().max().item<double>(), 0.0) << "the RLOO term must not reach the LoRA factors";
  }
  for (const auto& g : routers) EXPECT_GT(g.abs().sum().item<double>(), 0.0);
}

// --- 2. No routing decision depends on a later token (the response) -------------------------------

// Every captured gate of `examples` run one at a time through the training forward (training mode,
// routing noise from seed 5) and through score_targets (inference), per site.
struct Gates {
  std::map<std::string, std::vector<at::Tensor>> training, scoring;
};

Gates gates_of(const AdapterConfig& config, const TrainingExample& example) {
  Gates out;
  for (bool training : {true, false}) {
    AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);  // fresh SMoRA biases
    randomize_b(adapted, 3, 0.5);
    RoutingCapture capture;
    adapted.routing().capture = &capture;
    at::NoGradGuard no_grad;
    if (training) {
      adapted.set_training(true);
      adapted.routing().generator = at::make_generator<at::CPUGeneratorImpl>(5);
      adapted.routing().reset();
      const Batch batch = collate({example}, {0}, 0);
      row_losses(adapted.model(), batch.ids, batch.attention, batch.target_mask, batch.routing_mask);
    } else {
      score_targets(adapted.model(), {example}, 1);
    }
    for (const auto& [site, record] : capture.sites) {
      (training ? out.training : out.scoring)[site] = record.weights;
    }
  }
  return out;
}

TEST(RoutingDecisions, ChangingTheResponseNeverChangesAnEarlierDecision) {
  const int64_t prompt = 5, length = 12;
  TrainingExample original = examples_of({length}, prompt, 40)[0];
  TrainingExample changed = original;
  for (int64_t t = prompt; t < length; ++t) changed.ids[t] = (original.ids[t] + 17) % 512;
  for (AdapterMethod method : {AdapterMethod::kMolora, AdapterMethod::kTopk, AdapterMethod::kHydra,
                               AdapterMethod::kRemix, AdapterMethod::kSmora}) {
    for (RoutingGranularity granularity : {RoutingGranularity::kToken, RoutingGranularity::kSequence}) {
      SCOPED_TRACE(std::string(method_name(method)) +
                   (granularity == RoutingGranularity::kToken ? " token" : " sequence"));
      AdapterConfig config = adapter_config(method);
      config.routing = granularity;
      const Gates a = gates_of(config, original), b = gates_of(config, changed);
      for (const auto& [name, mode_a, mode_b] : {std::tuple{"training", &a.training, &b.training},
                                                 std::tuple{"scoring", &a.scoring, &b.scoring}}) {
        ASSERT_FALSE(mode_a->empty());
        for (const auto& [site, gates] : *mode_a) {
          const at::Tensor before = at::cat(gates), after = at::cat(mode_b->at(site));
          // A token-level gate has a row per position: those before the response must match. A
          // sequence-level gate has one row, made from the prompt: it must match entirely.
          const int64_t rows = before.size(0) == 1 ? 1 : prompt;
          EXPECT_TRUE(at::equal(before.narrow(0, 0, rows), after.narrow(0, 0, rows))) << name << " " << site;
        }
      }
    }
  }
}

TEST(RoutingDecisions, PromptRuleForRowsWithAndWithoutAPrompt) {
  TrainingExample with_prompt;
  with_prompt.ids = {1, 2, 3, 4, 5};
  with_prompt.prompt_length = 3;
  TrainingExample text = with_prompt;
  text.prompt_length = 0;  // a `text` row: every token is a target
  EXPECT_EQ(routing_prefix_length(with_prompt), 3);
  EXPECT_EQ(routing_prefix_length(text), 1);
  with_prompt.target = text.target = {0, 1, 1, 1, 1};
  const Batch batch = collate({with_prompt, text}, {0, 1}, 0);
  EXPECT_TRUE(at::equal(batch.routing_mask.to(at::kLong),
                        at::tensor({1, 1, 1, 0, 0, 1, 0, 0, 0, 0}, at::kLong).view({2, 5})));
}

// --- 3. ReMix routers train whatever the top-level method -----------------------------------------

TEST(PolicyRouters, ReMixRoutersTrainUnderAnyTopLevelMethod) {
  AdapterConfig lora_with_remix = adapter_config(AdapterMethod::kLora);
  lora_with_remix.method_pattern = {{"gate_proj", AdapterMethod::kRemix}, {"up_proj", AdapterMethod::kRemix},
                                    {"down_proj", AdapterMethod::kRemix}};
  AdapterConfig remix_with_lora = adapter_config(AdapterMethod::kRemix);
  remix_with_lora.method_pattern = {{"q_proj", AdapterMethod::kLora}, {"k_proj", AdapterMethod::kLora},
                                    {"v_proj", AdapterMethod::kLora}, {"o_proj", AdapterMethod::kLora}};
  for (const AdapterConfig& config : {lora_with_remix, remix_with_lora}) {
    AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
    randomize_b(adapted, 3, 0.5);
    adapted.set_training(true);
    adapted.routing().generator = at::make_generator<at::CPUGeneratorImpl>(3);
    EXPECT_TRUE(adapted.has_policy_routers());
    const Batch batch = collate(examples_of({8, 8}, 3, 60), {0, 1}, 0);
    MicroBatchObjective objective = micro_batch_objective(adapted.model(), &adapted, batch, batch.target_tokens, 4, 1);
    objective.objective.backward();
    EXPECT_GT(objective.advantage_spread, 0) << "the M samples ran";
    ASSERT_EQ(adapted.router_parameters().size(), 2u);  // one per MLP block
    for (const auto& p : adapted.router_parameters()) {
      ASSERT_TRUE(p.grad().defined());
      EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
    }
  }
}

// --- 4. The top-k balance loss pools every layer's tokens ----------------------------------------

TEST(TopkBalance, PooledOverLayersAsMixtralAndMixLoraComputeIt) {
  for (BalanceLossScope scope : {BalanceLossScope::kPooled, BalanceLossScope::kLayer}) {
    AdapterConfig config = adapter_config(AdapterMethod::kTopk);
    config.target_modules = nlohmann::json::array({"gate_proj", "up_proj", "down_proj"});
    config.balance_loss_coef = 0.01;
    config.balance_loss_scope = scope;
    AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
    adapted.set_training(true);
    RoutingCapture capture;
    capture.keep_probs = true;
    adapted.routing().capture = &capture;
    adapted.routing().reset();
    at::Tensor mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 6});
    adapted.model().forward(random_ids(2, 6, 512, 3), mask);
    ASSERT_EQ(capture.sites.size(), 2u);  // two layers, one MLP router each

    // From the captured gates (real tokens only): f_i = share of tokens whose top k holds i,
    // P_i = mean router probability, both over the tokens the loss covers.
    const int64_t n = config.num_experts;
    auto balance = [&](const at::Tensor& probs, const at::Tensor& selected) {
      at::Tensor chosen = at::zeros({probs.size(0), n}).scatter(-1, selected, 1.0);
      return config.balance_loss_coef * n * (chosen.mean(0) * probs.mean(0)).sum().item<double>();
    };
    std::vector<at::Tensor> all_probs, all_selected;
    double per_layer = 0;
    for (const auto& [site, record] : capture.sites) {
      all_probs.push_back(at::cat(record.probs));
      all_selected.push_back(at::cat(record.selected).to(at::kLong));
      per_layer += balance(all_probs.back(), all_selected.back());
    }
    const double pooled = balance(at::cat(all_probs), at::cat(all_selected));
    const double expected = scope == BalanceLossScope::kPooled ? pooled : per_layer;
    EXPECT_NEAR(adapted.routing().auxiliary_loss().item<double>(), expected, 1e-7);
    EXPECT_GT(std::abs(pooled - per_layer), 1e-4) << "the two scopes must differ for the test to tell them apart";
  }
}

// --- 5. Routers are clipped on their own ---------------------------------------------------------

TEST(Clipping, SeparateClipLeavesTheAdaptersUpdateAloneJointShrinksBoth) {
  auto with_grad = [](double value) {
    at::Tensor p = at::zeros({4}).set_requires_grad(true);
    p.mutable_grad() = at::full({4}, value);  // norm 2 |value|
    return p;
  };
  at::Tensor adapter = with_grad(0.25), router = with_grad(20.0);  // norms 0.5 and 40
  GradientNorms joint = clip_gradients_jointly({adapter}, {router}, 1.0);
  EXPECT_DOUBLE_EQ(joint.weights, 0.5);
  EXPECT_DOUBLE_EQ(joint.routers, 40.0);
  const double shrink = 1.0 / (std::hypot(0.5, 40.0) + 1e-6);
  EXPECT_NEAR(adapter.grad()[0].item<double>(), 0.25 * shrink, 1e-9);  // the router's norm shrank it 80x

  adapter = with_grad(0.25);
  router = with_grad(20.0);
  EXPECT_DOUBLE_EQ(clip_gradients({adapter}, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(clip_gradients({router}, 1.0), 40.0);
  EXPECT_DOUBLE_EQ(adapter.grad()[0].item<double>(), 0.25);  // under the limit: untouched
  EXPECT_NEAR(router.grad().norm().item<double>(), 1.0, 1e-6);
}

// --- The router-objective ablations --------------------------------------------------------------

TEST(RouterObjective, ReinforceHasNoBaselineAndFrozenNoRouterTerm) {
  for (RouterObjective kind : {RouterObjective::kReinforce, RouterObjective::kFrozen}) {
    at::Tensor losses = at::tensor({1.0f, 3.0f, 2.0f, 6.0f}).view({2, 2}).set_requires_grad(true);
    at::Tensor log_probs = at::zeros({2, 2}).set_requires_grad(true);
    rloo_objective(losses, log_probs, {}, kind).objective.backward();
    // REINFORCE: d/dlogQ_mb = L_mb / M / B; frozen: nothing.
    at::Tensor expected = kind == RouterObjective::kReinforce ? losses.detach() / 4 : at::zeros({2, 2});
    at::Tensor grad = log_probs.grad().defined() ? log_probs.grad() : at::zeros({2, 2});
    EXPECT_TRUE(at::allclose(grad, expected)) << grad;
    EXPECT_TRUE(at::allclose(losses.grad(), at::full({2, 2}, 0.25)));  // the adapters' part is unchanged
  }
  const at::Tensor losses = at::tensor({1.0f, 3.0f, 2.0f, 6.0f}).view({2, 2});
  // Without a baseline one sample is enough; RLOO needs two.
  EXPECT_NO_THROW(rloo_objective(losses.narrow(0, 0, 1), at::zeros({1, 2}), {}, RouterObjective::kReinforce));
  EXPECT_THROW(rloo_objective(losses.narrow(0, 0, 1), at::zeros({1, 2})), Error);
}

TEST(RouterObjective, FrozenRoutersKeepTheirWeightsAndStillSample) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.router_objective = RouterObjective::kFrozen;
  AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
  randomize_b(adapted, 3, 0.5);
  adapted.set_training(true);
  for (const auto& p : adapted.router_parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_EQ(adapted.trainable_parameter_count(),
            [&] { int64_t n = 0; for (const auto& p : adapted.adapter_parameters()) n += p.numel(); return n; }());
  adapted.routing().generator = at::make_generator<at::CPUGeneratorImpl>(3);
  const Batch batch = collate(examples_of({8, 8}, 3, 60), {0, 1}, 0);
  MicroBatchObjective objective = micro_batch_objective(adapted.model(), &adapted, batch, batch.target_tokens, 4, 1);
  objective.objective.backward();
  EXPECT_GT(objective.advantage_spread, 0) << "selections are still sampled";
  for (const auto& p : adapted.router_parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : adapted.adapter_parameters()) EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
}

// --- 7. SMoRA as the official code (StyxXuan/smora, srmole/layer.py) runs it ----------------------

TEST(Smora, PerRankTopKWithBlockScoresAndPerRankBias) {
  // r = 8 ranks in blocks of 2 (4 router scores), k = 3 ranks: an odd count no block expert gives.
  const int64_t d = 6, ranks = 8, partition = 2, k = 3, N = 5;
  SmoraRouter router(d, ranks, k, 0.0, partition);
  EXPECT_EQ(router.weight.sizes(), (std::vector<int64_t>{ranks / partition, d}));
  EXPECT_EQ(router.balance_bias.sizes(), (std::vector<int64_t>{ranks}));
  {
    // A per-rank bias that splits the ranks of every block (equal scores would leave the order to
    // at::topk's sort, where remora's gate takes the lower rank: SmoraGate.TiesGoToTheLowerRank).
    at::NoGradGuard no_grad;
    router.balance_bias.copy_(at::tensor({0.0f, 0.01f, 0.02f, 0.0f, 0.0f, 0.03f, 0.0f, 0.015f}));
  }
  at::Tensor x = at::randn({N, d}, at::make_generator<at::CPUGeneratorImpl>(2));
  RoutingState state;
  Gate gate = router.route(x, at::ones({N}, at::kBool), 1, state);
  // The official formula: sigmoid, repeat_interleave to ranks, + bias, top k, k * s / sum s.
  at::Tensor s = at::sigmoid(at::linear(x, router.weight)).repeat_interleave(partition, -1) + router.balance_bias;
  auto [top, index] = s.topk(k, -1);
  at::Tensor expected = at::zeros({N, ranks}).scatter(-1, index, k * top / top.sum(-1, true));
  EXPECT_TRUE(at::allclose(gate.weights, expected));
  EXPECT_TRUE((gate.weights > 0).sum(-1).eq(k).all().item<bool>());
}

TEST(Smora, RouterStartsAsTorchLinearAndRoutesTheDroppedOutInput) {
  AdapterConfig config = adapter_config(AdapterMethod::kSmora);
  config.r = 8;
  config.top_k = 2;
  config.smora_bias_rate = 0;  // keep the router fixed between the two routings below
  config.lora_dropout = 0.5;
  config.target_modules = nlohmann::json::array({"up_proj"});
  AdaptedModel adapted(random_model(toy_config("llama"), 2, 0.1), config, 1);
  const auto& layer = adapted.adapted()[0];
  const at::Tensor w = layer->router->parameters()[0];
  const double bound = 1.0 / std::sqrt(static_cast<double>(w.size(1)));  // nn.Linear: U(-1/sqrt(d), 1/sqrt(d))
  EXPECT_LE(w.abs().max().item<double>(), bound);
  EXPECT_NEAR(w.std().item<double>(), bound / std::sqrt(3.0), 0.2 * bound / std::sqrt(3.0));

  adapted.set_training(true);
  RoutingCapture capture;
  adapted.routing().capture = &capture;
  at::Tensor x = at::randn({7, layer->in_features()});
  at::manual_seed(11);
  at::NoGradGuard no_grad;
  layer->forward(x);
  at::manual_seed(11);
  at::Tensor dropped = at::dropout(x, 0.5, true);
  RoutingState state;
  const Gate gate = std::dynamic_pointer_cast<SmoraRouter>(layer->router)->route(dropped, at::ones({7}, at::kBool), 1, state);
  EXPECT_TRUE(at::equal(at::cat(capture.sites.begin()->second.weights), gate.weights.gather(-1, gate.selected)));
}

}  // namespace
}  // namespace remora
