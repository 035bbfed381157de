// Serving's batch: rows of different adapters and prompt lengths, joined on one cache, decode exactly
// as each row does alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "core/error.h"
#include "eval/generate.h"
#include "serve/adapter_set.h"
#include "serve/batch_cache.h"

namespace remora {
namespace {

namespace fs = std::filesystem;
using namespace remora::testing;

constexpr int64_t kNewTokens = 5;

class ServeBatch : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  void SetUp() override {
    // One folder per test and dtype: ctest runs them in parallel.
    std::string name = std::string("serve_batch_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = testing::scratch_path(name);
    fs::remove_all(dir_);
    // One saved adapter per method, and ReMix routing per sequence, each with a non-zero B.
    for (size_t i = 0; i < configs().size(); ++i) {
      AdaptedModel adapted(base(), configs()[i], i);
      randomize_b(adapted, 10 + i, 1.0);
      save_adapter(adapted, folder(i));
    }
  }
  static const std::vector<AdapterConfig>& configs() {
    static const std::vector<AdapterConfig> all = [] {
      std::vector<AdapterConfig> list;
      for (const auto& [name, config] : all_variants()) {
        if (config.method != AdapterMethod::kRetrieval) list.push_back(config);  // serve refuses it (tested)
      }
      AdapterConfig sequence = adapter_config(AdapterMethod::kRemix);
      sequence.routing = RoutingGranularity::kSequence;
      list.push_back(sequence);
      return list;
    }();
    return all;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The test's dtype (fp32, or bf16: batching must not change its rounding either).
  static std::shared_ptr<CausalLM> base() {
    auto model = random_model(toy_config("llama"), 1, 0.3);
    model->to(GetParam());
    return model;
  }
  std::string folder(size_t i) const { return (dir_ / ("adapter" + std::to_string(i))).string(); }

  fs::path dir_;
};

TEST_P(ServeBatch, RowsOfEveryAdapterJoinedOnOneCacheDecodeAsEachAlone) {
  const size_t adapters = configs().size();
  auto shared_base = base();
  AdapterSet set(shared_base);
  for (size_t i = 0; i < adapters; ++i) set.add("adapter" + std::to_string(i), folder(i));
  set.install();

  // One row for the bare base and one per adapter, prompts of different lengths.
  at::NoGradGuard no_grad;
  const int64_t vocab = shared_base->config().vocab_size;
  std::vector<int> adapter_of_row;
  std::vector<std::vector<int64_t>> prompts;
  // A second row of the sequence-routed adapter: each of its rows must keep its own prompt's decision.
  for (int a = -1; a <= static_cast<int>(adapters); ++a) {
    adapter_of_row.push_back(std::min<int>(a, adapters - 1));
    at::Tensor ids = random_ids(1, 3 + 2 * (a + 1), vocab, 100 + a).view({-1});
    prompts.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  }
  const size_t rows = prompts.size();

  // As the engine: each prompt is prefilled alone, then every row decodes in one batch.
  std::vector<KVCache> prompt_caches;
  std::vector<std::vector<at::Tensor>> decisions;  // sequence routing's prompt decisions
  std::vector<std::vector<int64_t>> tokens(rows);
  for (size_t r = 0; r < rows; ++r) {
    const int64_t P = static_cast<int64_t>(prompts[r].size());
    set.set_rows({adapter_of_row[r]});
    prompt_caches.emplace_back(shared_base->config().num_layers, P);
    at::Tensor hidden = shared_base->hidden_states(at::tensor(prompts[r]).view({1, P}), at::ones({1, P}, at::kLong), &prompt_caches.back());
    tokens[r].push_back(shared_base->logits(hidden.select(1, P - 1)).argmax(-1).item<int64_t>());
    decisions.push_back(set.sequence_decisions(adapter_of_row[r]));
  }
  EXPECT_FALSE(decisions.back().empty());  // the last adapter routes per sequence
  std::vector<CachedRow> layout;
  for (size_t r = 0; r < rows; ++r) layout.push_back({&prompt_caches[r], 0, static_cast<int64_t>(prompts[r].size())});
  KVCache cache = rebuild_cache(layout, kNewTokens - 1);
  at::Tensor last_logits;
  for (int64_t step = 1; step < kNewTokens; ++step) {
    std::vector<int64_t> last;
    for (const auto& row : tokens) last.push_back(row.back());
    set.set_rows(adapter_of_row, decisions);
    at::Tensor hidden = shared_base->hidden_states(at::tensor(last).view({-1, 1}), at::ones({static_cast<int64_t>(rows), 1}, at::kLong), &cache);
    last_logits = shared_base->logits(hidden.select(1, 0));
    at::Tensor next = last_logits.argmax(-1);
    for (size_t r = 0; r < rows; ++r) tokens[r].push_back(next[r].item<int64_t>());
  }

  // Each row alone: its adapter loaded the ordinary way on a fresh copy of the base.
  for (size_t r = 0; r < rows; ++r) {
    auto alone = base();
    std::unique_ptr<AdaptedModel> adapter;
    if (adapter_of_row[r] >= 0) adapter = load_adapter(alone, folder(adapter_of_row[r]));
    GenerationOptions options;
    options.max_new_tokens = kNewTokens;
    EXPECT_EQ(tokens[r], generate(*alone, {prompts[r]}, options)[0]) << "row " << r << " (adapter " << adapter_of_row[r] << ")";
    // In fp32, the last batched step's logits against the whole sequence run alone without a cache
    // (in bf16 a recomputed prefill rounds differently from a cached one, so only tokens compare).
    if (GetParam() != at::kFloat) continue;
    std::vector<int64_t> sequence = prompts[r];
    sequence.insert(sequence.end(), tokens[r].begin(), tokens[r].end() - 1);
    const int64_t S = static_cast<int64_t>(sequence.size());
    // Sequence routing decides from the prompt alone, as in cached decoding.
    at::Tensor prompt_mask = at::arange(S).lt(static_cast<int64_t>(prompts[r].size())).view({1, S});
    at::Tensor expected =
        alone->logits(alone->hidden_states(at::tensor(sequence).view({1, S}), {}, nullptr, prompt_mask)).select(1, S - 1)[0];
    EXPECT_TRUE(at::allclose(last_logits[r], expected, 1e-4, 1e-4))
        << "row " << r << ": max difference " << (last_logits[r] - expected).abs().max().item<float>();
  }
}

TEST_P(ServeBatch, RefusesAdaptersWhoseOutputWouldDependOnTheBatch) {
  AdapterConfig config = adapter_config(AdapterMethod::kRemix);
  config.sample_at_inference = true;
  AdaptedModel sampled(base(), config);
  save_adapter(sampled, (dir_ / "sampled").string());

  // Retrieval routes after a pre-pass of the base model, which serving's batched forwards do not run.
  AdaptedModel retrieval(base(), adapter_config(AdapterMethod::kRetrieval));
  save_adapter(retrieval, (dir_ / "retrieval").string());

  AdapterSet set(base());
  EXPECT_THROW(set.add("sampled", (dir_ / "sampled").string()), Error);
  EXPECT_THROW(set.add("retrieval", (dir_ / "retrieval").string()), Error);
  set.add("lora", folder(0));
  EXPECT_THROW(set.add("lora", folder(1)), Error);  // a name given twice
  EXPECT_EQ(set.index_of("lora"), 0);
  EXPECT_EQ(set.index_of("other"), -1);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ServeBatch, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

}  // namespace
}  // namespace remora
