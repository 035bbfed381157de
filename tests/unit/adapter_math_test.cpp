// The adapter layer and routers against independent references: a per-expert loop, exact
// enumeration of the RLOO expectation, Plackett-Luce probabilities, SMoRA balancing.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "adapter_test_util.h"
#include "adapters/routers/routers.h"
#include "core/error.h"
#include "train/rloo.h"

#include <torch/csrc/autograd/autograd.h>

namespace remora {
namespace {
using namespace remora::testing;

// --- Dense masked computation == loop over experts -------------------------------------------

struct LayerCase {
  AdapterMethod method;
  std::shared_ptr<Router> router;
};

// y = W0 x + sum_i g_i * scale * B_i A_i x, one expert at a time.
at::Tensor per_expert_reference(RoutedLoraLinear& layer, const at::Tensor& x, const at::Tensor& gate) {
  const int64_t r = layer.spec().rank;
  at::Tensor y = at::linear(x, layer.base->weight);
  for (int64_t i = 0; i < layer.spec().num_experts; ++i) {
    at::Tensor a = layer.shares_a() ? layer.lora_A : layer.lora_A.narrow(0, i * r, r);
    if (layer.lora_P.defined()) a = at::matmul(layer.lora_P.narrow(0, i * r, r), layer.lora_A);  // MALoRA: P_i S
    at::Tensor b = layer.lora_B.narrow(1, i * r, r);
    y = y + gate.select(1, i).unsqueeze(1) * layer.scale() * at::linear(at::linear(x, a), b);
  }
  return y;
}

TEST(RoutedLoraLinear, DenseMaskedEqualsPerExpertLoopForwardAndGradients) {
  const int64_t d_in = 12, d_out = 10, n = 4, r = 3, k = 2;
  for (AdapterMethod method : {AdapterMethod::kMolora, AdapterMethod::kTopk, AdapterMethod::kHydra,
                               AdapterMethod::kSmora, AdapterMethod::kMalora}) {
    SCOPED_TRACE(method_name(method));
    AdapterConfig config = adapter_config(method);
    config.r = method == AdapterMethod::kSmora ? n * r : r;
    config.rank_partition = r;
    config.num_experts = n;
    config.top_k = k;
    // SMoRA: n r rank-1 experts, blocks of r ranks sharing a router score, top k ranks.
    ModuleAdapterSpec spec = method == AdapterMethod::kSmora
                                 ? ModuleAdapterSpec{method, 1, 6.0, n * r, k, r}
                                 : ModuleAdapterSpec{method, r, 6.0, n,
                                                     method == AdapterMethod::kTopk || method == AdapterMethod::kMalora ? k : n};
    at::manual_seed(1);
    auto base = std::make_shared<Linear>(d_in, d_out, false, at::TensorOptions().dtype(at::kFloat));
    base->weight.normal_();
    RoutingState state;
    auto router = make_router(spec, config, d_in);
    RoutedLoraLinear layer(base, spec, adapter_scale(spec), 0.0, router, nullptr, &state, "test");
    {
      at::NoGradGuard no_grad;
      layer.lora_B.normal_();
    }
    at::Tensor x = at::randn({5, d_in});

    at::Tensor y = layer.forward(x);
    y.pow(2).sum().backward();
    std::vector<at::Tensor> grads = {layer.lora_A.grad().clone(), layer.lora_B.grad().clone(),
                                     router->parameters()[0].grad().clone()};
    if (layer.lora_P.defined()) grads.push_back(layer.lora_P.grad().clone());
    for (auto& p : layer.parameters()) p.mutable_grad() = at::Tensor();

    at::Tensor gate = router->route(x, at::ones({5}, at::kBool), 1, state).weights;
    at::Tensor expected = per_expert_reference(layer, x, gate);
    EXPECT_LT((y - expected).abs().max().item<double>(), 1e-4);
    expected.pow(2).sum().backward();
    std::vector<at::Tensor> expected_grads = {layer.lora_A.grad(), layer.lora_B.grad(),
                                              router->parameters()[0].grad()};
    if (layer.lora_P.defined()) expected_grads.push_back(layer.lora_P.grad());
    for (size_t i = 0; i < grads.size(); ++i) {
      EXPECT_TRUE(at::allclose(grads[i], expected_grads[i], 1e-4, 1e-4)) << "gradient " << i;
    }
  }
}

// Generation's one-position steps in bf16 take the decode kernel for the factors too: each row
// comes out as it would alone, and within bf16 rounding of the formula in fp64.
TEST(RoutedLoraLinear, Bfloat16DecodeStepsFollowTheFormulaRowByRow) {
  const int64_t d_in = 40, d_out = 24, r = 8, rows = 3;
  const ModuleAdapterSpec spec{AdapterMethod::kLora, r, 16.0, 1, 1};
  at::manual_seed(4);
  auto base = std::make_shared<Linear>(d_in, d_out, false, at::TensorOptions().dtype(at::kBFloat16));
  RoutingState state;
  RoutedLoraLinear layer(base, spec, adapter_scale(spec), 0.0, nullptr, nullptr, &state, "test");
  at::NoGradGuard no_grad;
  base->weight.normal_();
  layer.lora_B.normal_();
  const at::Tensor x = at::randn({rows, 1, d_in}).to(at::kBFloat16);
  const at::Tensor y = layer.forward(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{rows, 1, d_out}));
  const auto exact = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
  const at::Tensor x64 = x.to(at::kDouble).view({rows, d_in});
  const at::Tensor expected = at::linear(x64, exact(base->weight)) +
                              layer.scale() * at::linear(at::linear(x64, exact(layer.lora_A)), exact(layer.lora_B));
  const double tolerance = 0.02 * expected.abs().max().item<double>();
  EXPECT_LT((y.view({rows, d_out}).to(at::kDouble) - expected).abs().max().item<double>(), tolerance);
  for (int64_t row = 0; row < rows; ++row) {
    EXPECT_TRUE(at::equal(layer.forward(x.narrow(0, row, 1)), y.narrow(0, row, 1))) << "row " << row;
  }
}

TEST(RoutedLoraLinear, MultiLoraSumsEachLoraScaledPerChannelAndMergesToTheSame) {
  const int64_t d_in = 12, d_out = 10, n = 3, r = 2;
  ModuleAdapterSpec spec{AdapterMethod::kMultilora, r, 6.0, n, n};
  at::manual_seed(2);
  auto base = std::make_shared<Linear>(d_in, d_out, false, at::TensorOptions().dtype(at::kFloat));
  base->weight.normal_();
  RoutingState state;
  RoutedLoraLinear layer(base, spec, adapter_scale(spec), 0.0, nullptr, nullptr, &state, "test");
  at::Tensor x = at::randn({5, d_in});
  // The update starts at zero through the scales (B is not zero: MultiLoRA's init).
  EXPECT_GT(layer.lora_B.abs().sum().item<double>(), 0);
  EXPECT_TRUE(at::equal(layer.forward(x), at::linear(x, base->weight)));
  {
    at::NoGradGuard no_grad;
    layer.lora_scaling.normal_();
  }
  at::Tensor expected = at::linear(x, base->weight);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor lora = at::linear(at::linear(x, layer.lora_A.narrow(0, i * r, r)), layer.lora_B.narrow(1, i * r, r));
    expected = expected + (6.0 / r) * lora * layer.lora_scaling[i];
  }
  EXPECT_LT((layer.forward(x) - expected).abs().max().item<double>(), 1e-5);
  EXPECT_LT((at::linear(x, base->weight + layer.delta_weight()) - expected).abs().max().item<double>(), 1e-5);
}

// --- Gumbel-top-k samples ordered selections with Plackett-Luce probabilities -----------------

TEST(RemixRouter, GumbelTopKFrequenciesMatchSamplingWithoutReplacement) {
  const int64_t n = 4, k = 2, draws = 40000;
  RemixRouter router(1, n, k, 0.25, false, 0.0);
  const std::vector<double> q = {0.4, 0.3, 0.2, 0.1};
  {
    at::NoGradGuard no_grad;  // logits log q for the input x = 1
    for (int64_t i = 0; i < n; ++i) router.weight[i][0] = std::log(q[i]);
  }
  RoutingState state;
  state.training = true;
  state.generator = at::make_generator<at::CPUGeneratorImpl>(7);
  Gate gate = router.route(at::ones({draws, 1}), at::ones({draws}, at::kBool), draws, state);
  std::map<std::pair<int64_t, int64_t>, int64_t> counts;
  auto selected = gate.selected.accessor<int64_t, 2>();
  for (int64_t d = 0; d < draws; ++d) counts[{selected[d][0], selected[d][1]}]++;

  // Chi-square over the 12 ordered pairs, 11 degrees of freedom; 31.26 is the 0.999 quantile.
  double chi_square = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const double expected = draws * q[i] * q[j] / (1 - q[i]);
      const double observed = static_cast<double>(counts[{i, j}]);
      chi_square += (observed - expected) * (observed - expected) / expected;
    }
  }
  EXPECT_LT(chi_square, 31.26);
  // The log-probability the router reports for a selection is log of that same probability.
  const double reported = state.log_prob[0].item<double>();
  const int64_t a = selected[0][0], b = selected[0][1];
  EXPECT_NEAR(reported, std::log(q[a] * q[b] / (1 - q[a])), 1e-5);
}

TEST(RemixRouter, InferenceIsDeterministicTopKWithConstantWeights) {
  RemixRouter router(3, 5, 2, 0.125, false, 1.0);
  RoutingState state;  // not training
  at::Tensor x = at::randn({6, 3});
  Gate gate = router.route(x, at::ones({6}, at::kBool), 1, state);
  at::Tensor top = std::get<1>(at::linear(x, router.weight).topk(2, -1));
  EXPECT_TRUE(at::equal(std::get<0>(gate.selected.sort(-1)), std::get<0>(top.sort(-1))));
  EXPECT_TRUE(at::allclose(gate.weights.sum(-1), at::full({6}, 0.25)));
  EXPECT_EQ((gate.weights > 0).sum(-1).eq(2).all().item<bool>(), true);
  EXPECT_FALSE(state.log_prob.defined());
}

// --- RLOO is unbiased: average of many estimates -> exact gradient of E[L] ------------------------

// Exact log-probability of the ordered selection (a, b) under q = softmax(logits), written from the
// definition of sampling without replacement (independently of the router's code).
at::Tensor ordered_pair_log_prob(const at::Tensor& logits, int64_t a, int64_t b) {
  at::Tensor q = at::softmax(logits, -1);
  return at::log(q[a]) + at::log(q[b]) - at::log(1 - q[a]);
}

TEST(Rloo, RouterGradientIsUnbiasedOnAnEnumerableToy) {
  // Two layers, each a ReMix router over n = 3 experts picking k = 2 (6 ordered selections each,
  // 36 joint outcomes); the loss of an outcome is a fixed table. x = 1 so P's column is the logits.
  const int64_t n = 3, M = 4, draws = 4000;
  std::vector<std::shared_ptr<RemixRouter>> routers;
  for (int layer = 0; layer < 2; ++layer) {
    routers.push_back(std::make_shared<RemixRouter>(1, n, 2, 0.25, false, 0.0));
    at::NoGradGuard no_grad;
    routers.back()->weight.copy_(at::tensor({0.5, -0.3, 0.1}).view({n, 1}) * (layer + 1));
  }
  at::Tensor table = at::rand({n, n, n, n}, at::make_generator<at::CPUGeneratorImpl>(3)) * 4;

  // Exact: grad of sum over outcomes Q(J) L(J).
  at::Tensor expected_loss = at::zeros({});
  for (int64_t a = 0; a < n; ++a) for (int64_t b = 0; b < n; ++b) for (int64_t c = 0; c < n; ++c)
    for (int64_t d = 0; d < n; ++d) {
      if (a == b || c == d) continue;
      at::Tensor log_q = ordered_pair_log_prob(routers[0]->weight.view({n}), a, b) +
                         ordered_pair_log_prob(routers[1]->weight.view({n}), c, d);
      expected_loss = expected_loss + log_q.exp() * table[a][b][c][d];
    }
  auto exact = torch::autograd::grad({expected_loss}, {routers[0]->weight, routers[1]->weight});

  // Estimates: M selections per draw, one batch of M rows through both routers.
  RoutingState state;
  state.training = true;
  state.generator = at::make_generator<at::CPUGeneratorImpl>(11);
  std::vector<at::Tensor> sum = {at::zeros({n, 1}), at::zeros({n, 1})};
  std::vector<at::Tensor> sum_sq = {at::zeros({n, 1}), at::zeros({n, 1})};
  at::Tensor x = at::ones({M, 1});
  at::Tensor valid = at::ones({M}, at::kBool);
  for (int64_t t = 0; t < draws; ++t) {
    state.reset();
    Gate first = routers[0]->route(x, valid, M, state);
    Gate second = routers[1]->route(x, valid, M, state);
    at::Tensor losses = at::empty({M, 1});
    for (int64_t m = 0; m < M; ++m) {
      losses[m][0] = table[first.selected[m][0].item<int64_t>()][first.selected[m][1].item<int64_t>()]
                          [second.selected[m][0].item<int64_t>()][second.selected[m][1].item<int64_t>()];
    }
    RlooObjective objective = rloo_objective(losses, state.log_prob.view({M, 1}));
    auto grads = torch::autograd::grad({objective.objective}, {routers[0]->weight, routers[1]->weight});
    for (int i = 0; i < 2; ++i) {
      sum[i] += grads[i];
      sum_sq[i] += grads[i] * grads[i];
    }
  }
  // Each component within 4 standard errors of the exact value (about 1 in 16000 to fail by
  // chance per component if unbiased; fixed seeds make the test deterministic).
  for (int i = 0; i < 2; ++i) {
    at::Tensor mean = sum[i] / draws;
    at::Tensor standard_error = ((sum_sq[i] / draws - mean * mean) / draws).sqrt();
    EXPECT_GT(exact[i].abs().max().item<double>(), 10 * standard_error.max().item<double>())
        << "the exact gradient should be clearly non-zero for the test to mean anything";
    EXPECT_TRUE(((mean - exact[i]).abs() <= 4 * standard_error).all().item<bool>())
        << "layer " << i << " estimate " << mean.view({-1}) << " exact " << exact[i].view({-1});
  }
}

TEST(Rloo, ObjectiveValueGradientsAndStatistics) {
  at::Tensor losses = at::tensor({1.0f, 3.0f, 2.0f, 6.0f}).view({2, 2}).set_requires_grad(true);
  at::Tensor log_probs = at::zeros({2, 2}).set_requires_grad(true);
  RlooObjective result = rloo_objective(losses, log_probs);
  EXPECT_DOUBLE_EQ(result.mean_loss, 3.0);
  EXPECT_NEAR(result.objective.item<double>(), 3.0, 1e-6);  // log-probs are 0 here
  result.objective.backward();
  // Inputs: (1, 2) and (3, 6); advantages (-0.5, 0.5) and (-1.5, 1.5), / (M - 1) = 1, / B = 2.
  EXPECT_TRUE(at::allclose(log_probs.grad(), at::tensor({-0.25f, -0.75f, 0.25f, 0.75f}).view({2, 2})));
  EXPECT_TRUE(at::allclose(losses.grad(), at::full({2, 2}, 0.25)));  // mean over M and B
  EXPECT_NEAR(result.advantage_spread, std::sqrt((0.25 + 0.25 + 2.25 + 2.25) / 4), 1e-6);  // fp32
  EXPECT_THROW(rloo_objective(losses.narrow(0, 0, 1), log_probs.narrow(0, 0, 1)), Error);
}

TEST(Rloo, OneForwardOverMTimesBRowsTrainsAdaptersAndRouters) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.target_modules = nlohmann::json::array({"gate_proj", "up_proj", "down_proj"});
  AdaptedModel adapted(random_model(toy_config("llama"), 2), config);
  randomize_b(adapted, 3);
  adapted.set_training(true);
  const int64_t M = 3, B = 2, T = 6;
  at::Tensor ids = random_ids(B, T, 512, 4);
  at::Tensor rows = ids.repeat({M, 1});  // row m * B + b is input b
  adapted.routing().reset();
  at::Tensor logits = adapted.model().forward(rows.narrow(1, 0, T - 1), {});
  at::Tensor token_loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                                 rows.narrow(1, 1, T - 1).reshape({-1}), {},
                                                 at::Reduction::None);
  at::Tensor losses = token_loss.view({M, B, T - 1}).mean(-1);
  ASSERT_EQ(adapted.routing().log_prob.sizes(), (std::vector<int64_t>{M * B}));
  RlooObjective objective = rloo_objective(losses, adapted.routing().log_prob.view({M, B}));
  objective.objective.backward();
  EXPECT_GT(objective.advantage_spread, 0) << "different routings should give different losses";
  for (const auto& p : adapted.router_parameters()) EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
  for (const auto& p : adapted.adapter_parameters()) EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
}

// --- SMoRA's loss-free balancing ------------------------------------------------------------

// Max over mean of per-expert loads over the last 50 of 400 skewed batches routed in training mode.
double final_imbalance(double bias_rate) {
  const int64_t n = 8, d = 6, tokens = 64;
  SmoraRouter router(d, n, 2, bias_rate);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  {
    at::NoGradGuard no_grad;  // distinct experts, with 0 and 1 scoring highest for positive inputs
    router.weight.copy_(at::empty({n, d}).normal_(0, 0.1, generator));
    router.weight[0].add_(1.0);
    router.weight[1].add_(0.8);
  }
  RoutingState state;
  state.training = true;
  at::Tensor load = at::zeros({n});
  for (int step = 0; step < 400; ++step) {
    at::Tensor x = at::rand({tokens, d}, generator);
    Gate gate = router.route(x, at::ones({tokens}, at::kBool), 1, state);
    if (step >= 350) load += at::bincount(gate.selected.flatten(), {}, n).to(at::kFloat);
  }
  return (load.max() / load.mean()).item<double>();
}

TEST(SmoraRouter, BiasUpdateDrivesASkewedLoadTowardsBalance) {
  const double without = final_imbalance(0.0), with = final_imbalance(0.01);
  EXPECT_NEAR(without, 4.0, 1e-9);  // every token picks experts 0 and 1: 4x the mean load
  EXPECT_LT(with, 1.5);
}

TEST(SmoraRouter, GatesSumToKOverTheSelectedRanks) {
  SmoraRouter router(5, 8, 3, 0.0);
  RoutingState state;
  Gate gate = router.route(at::randn({7, 5}), at::ones({7}, at::kBool), 1, state);
  EXPECT_TRUE(at::allclose(gate.weights.sum(-1), at::full({7}, 3.0)));
  EXPECT_TRUE((gate.weights > 0).sum(-1).eq(3).all().item<bool>());
}

TEST(RemixRouter, PlackettLuceLogProbabilityStaysExactForAConfidentRouter) {
  // Logits (20, 0, 0, 0): picking expert 0 then 1 has probability q0 * q1 / (1 - q0) = 1/3 exactly
  // in the limit, and 1 - q0 underflows in fp32.
  RemixRouter router(1, 4, 2, 0.25, false, 0.0);
  {
    at::NoGradGuard no_grad;
    router.weight.copy_(at::tensor({20.0f, 0.0f, 0.0f, 0.0f}).view({4, 1}));
  }
  RoutingState state;
  state.training = true;
  state.generator = at::make_generator<at::CPUGeneratorImpl>(1);
  Gate gate = router.route(at::ones({64, 1}), at::ones({64}, at::kBool), 64, state);
  auto selected = gate.selected.accessor<int64_t, 2>();
  for (int64_t i = 0; i < 64; ++i) {
    if (selected[i][0] != 0) continue;  // almost always expert 0 first
    EXPECT_NEAR(state.log_prob[i].item<double>(), std::log(1.0 / 3.0), 1e-4) << "draw " << i;
  }
}

TEST(TopkRouter, BalanceLossIsSwitchStyle) {
  // Two experts, k = 1, tokens preferring expert 0 with p = (0.75, 0.25) and expert 1 with (0.25, 0.75).
  TopkRouter router(2, 2, 1, 0.1, 0.0, BalanceLossScope::kLayer);
  {
    at::NoGradGuard no_grad;
    router.weight.copy_(at::eye(2) * std::log(3.0));
  }
  RoutingState state;
  state.training = true;
  at::Tensor x = at::tensor({1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f}).view({3, 2});  // 2 prefer 0, 1 prefers 1
  Gate gate = router.route(x, at::ones({3}, at::kBool), 1, state);
  EXPECT_TRUE(at::allclose(gate.weights.sum(-1), at::ones({3})));  // renormalised over the top k
  const double f0 = 2.0 / 3, f1 = 1.0 / 3;
  const double p0 = (0.75 + 0.75 + 0.25) / 3, p1 = (0.25 + 0.25 + 0.75) / 3;
  EXPECT_NEAR(state.aux_loss.item<double>(), 0.1 * 2 * (f0 * p0 + f1 * p1), 1e-6);
}

TEST(AdapterScales, MatchTheSpec) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.top_k = 2;
  config.omega_alpha = 2.0;
  config.omega_type = OmegaType::kRslora;
  EXPECT_DOUBLE_EQ(remix_omega(config, 8), 2.0 / 4.0);  // 2 / sqrt(2 * 8)
  config.omega_type = OmegaType::kLora;
  EXPECT_DOUBLE_EQ(remix_omega(config, 8), 2.0 / 16.0);
  EXPECT_DOUBLE_EQ(adapter_scale({AdapterMethod::kLora, 8, 16, 1, 1}), 2.0);
  EXPECT_DOUBLE_EQ(adapter_scale({AdapterMethod::kRslora, 16, 16, 1, 1}), 4.0);
  EXPECT_DOUBLE_EQ(adapter_scale({AdapterMethod::kSmora, 1, 16, 64, 8}), 2.0);  // alpha / k
  EXPECT_DOUBLE_EQ(adapter_scale({AdapterMethod::kRemix, 8, 16, 8, 2}), 1.0);  // omega is in the gate
}

}  // namespace
}  // namespace remora
