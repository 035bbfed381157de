// One battery for every adapter method: shape, zero-B equals base, save/load exact, merge where
// mergeable, gradients only on adapter tensors.
#include <gtest/gtest.h>

#include <filesystem>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "core/error.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using namespace remora::testing;

class AdapterConformance : public ::testing::TestWithParam<std::pair<std::string, AdapterConfig>> {
 protected:
  static const AdapterConfig& config() { return GetParam().second; }
  static AdapterMethod method() { return GetParam().second.method; }
  std::shared_ptr<CausalLM> base() { return random_model(toy_config("llama"), 5); }
  at::Tensor ids_ = random_ids(2, 7, 512, 9);
  at::Tensor mask_ = at::tensor({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, at::kLong).view({2, 7});
};

TEST_P(AdapterConformance, ZeroBReproducesTheBaseExactly) {
  auto model = base();
  at::NoGradGuard no_grad;
  at::Tensor expected = model->forward(ids_, mask_);
  AdaptedModel adapted(model, config());
  at::Tensor actual = adapted.model().forward(ids_, mask_);
  EXPECT_EQ(actual.sizes(), expected.sizes());
  EXPECT_TRUE(at::equal(actual, expected));
  randomize_b(adapted, 1);
  EXPECT_GT((adapted.model().forward(ids_, mask_) - expected).abs().max().item<double>(), 1e-4);
}

TEST_P(AdapterConformance, SaveThenLoadIsBitExact) {
  const fs::path dir = testing::scratch_path("adapter_" + GetParam().first);
  AdaptedModel adapted(base(), config(), 3);
  randomize_b(adapted, 2);
  {
    // One training forward moves SMoRA's balancing biases off zero, so they are round-tripped too.
    at::NoGradGuard no_grad;
    adapted.set_training(true);
    adapted.model().forward(ids_, mask_);
    adapted.set_training(false);
  }
  save_adapter(adapted, dir.string(), /*overwrite=*/true);
  auto loaded = load_adapter(base(), dir.string());
  const auto original = adapted.named_tensors(), restored = loaded->named_tensors();
  ASSERT_EQ(original.size(), restored.size());
  for (size_t i = 0; i < original.size(); ++i) {
    EXPECT_EQ(original[i].first, restored[i].first);
    EXPECT_TRUE(at::equal(original[i].second, restored[i].second)) << original[i].first;
  }
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(adapted.model().forward(ids_, mask_), loaded->model().forward(ids_, mask_)));
  fs::remove_all(dir);
}

TEST_P(AdapterConformance, MergedEqualsUnmergedOrMergeIsRefused) {
  AdaptedModel adapted(base(), config());
  randomize_b(adapted, 4);
  at::NoGradGuard no_grad;
  at::Tensor unmerged = adapted.model().forward(ids_, mask_);
  if (is_routed(method())) {
    EXPECT_THROW(merge_into_base(adapted), Error);
    EXPECT_TRUE(at::equal(adapted.model().forward(ids_, mask_), unmerged)) << "refusal changed the model";
    return;
  }
  merge_into_base(adapted);
  EXPECT_EQ(std::dynamic_pointer_cast<Linear>(
                adapted.model().model->layers[0]->as<DecoderLayer>()->self_attn->q_proj) != nullptr,
            true);
  EXPECT_LT((adapted.model().forward(ids_, mask_) - unmerged).abs().max().item<double>(), 1e-5);
}

TEST_P(AdapterConformance, OnlyAdapterTensorsGetGradients) {
  AdaptedModel adapted(base(), config());
  randomize_b(adapted, 5);
  adapted.set_training(true);
  adapted.routing().reset();
  at::Tensor loss = adapted.model().forward(ids_, mask_).logsumexp(-1).mean();
  if (adapted.routing().log_prob.defined()) loss = loss + adapted.routing().log_prob.mean();
  if (adapted.routing().auxiliary_loss().defined()) loss = loss + adapted.routing().auxiliary_loss();
  loss.backward();
  std::set<const void*> adapter_tensors;
  for (const auto& t : adapted.adapter_parameters()) {
    adapter_tensors.insert(t.unsafeGetTensorImpl());
    ASSERT_TRUE(t.grad().defined());
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0);
  }
  for (const auto& t : adapted.router_parameters()) {
    adapter_tensors.insert(t.unsafeGetTensorImpl());
    ASSERT_TRUE(t.grad().defined());
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0) << "router gets no gradient";
  }
  for (const auto& item : adapted.model().named_parameters()) {
    if (adapter_tensors.count(item.value().unsafeGetTensorImpl())) continue;
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
  }
}

TEST_P(AdapterConformance, ReportsActivatedNoMoreThanTrainable) {
  AdaptedModel adapted(base(), config());
  EXPECT_GT(adapted.activated_parameter_count(), 0);
  EXPECT_LE(adapted.activated_parameter_count(), adapted.trainable_parameter_count());
  // Exactly k of n experts active: their share of the factors plus all router weights.
  if (method() == AdapterMethod::kRemix || method() == AdapterMethod::kTopk) {
    int64_t routers = 0;
    for (const auto& t : adapted.router_parameters()) routers += t.numel();
    int64_t factors = 0;
    for (const auto& t : adapted.adapter_parameters()) factors += t.numel();
    EXPECT_EQ(adapted.activated_parameter_count(), factors / 4 * 2 + routers);
  }
}

TEST_P(AdapterConformance, DestroyingOrFailingToAttachLeavesTheBaseAsItWas) {
  auto model = base();
  at::NoGradGuard no_grad;
  at::Tensor expected = model->forward(ids_, mask_);
  const auto names_before = model->named_parameters().keys();
  {
    AdaptedModel adapted(model, config());
    randomize_b(adapted, 6);
  }
  EXPECT_TRUE(at::equal(model->forward(ids_, mask_), expected));
  EXPECT_EQ(model->named_parameters().keys(), names_before);
  AdapterConfig bad = config();
  bad.layer_num_experts = {2, 2};
  bad.method_pattern = {{"layers.1.mlp.down_proj", AdapterMethod::kTopk}};  // clashes only in layer 1
  bad.num_experts = 4;
  try {
    AdaptedModel clash(model, bad);
  } catch (const Error&) {
  }
  EXPECT_TRUE(at::equal(model->forward(ids_, mask_), expected));
  EXPECT_EQ(model->named_parameters().keys(), names_before);
}

INSTANTIATE_TEST_SUITE_P(EveryMethod, AdapterConformance, ::testing::ValuesIn(all_variants()),
                         [](const auto& info) { return info.param.first; });

}  // namespace
}  // namespace remora
