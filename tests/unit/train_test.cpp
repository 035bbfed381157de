// Trainer pieces: recipes, data formats and masking, batching, schedule, and the
// gradient-accumulation normalisation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "adapter_test_util.h"
#include "core/error.h"
#include "tokenizer/pretrained.h"
#include "train/batching.h"
#include "train/data.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/recipe.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace remora::testing;

fs::path temp_file(const std::string& name, const std::string& content) {
  const fs::path path = testing::scratch_path(name);
  std::ofstream(path) << content;
  return path;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

const char* kRecipe = "model:\n  path: m\nadapter:\n  method: remix\n  num_experts: 4\n  top_k: 2\n"
                      "data:\n  train: d.jsonl\noutput:\n  dir: out\n";

TEST(Recipe, DefaultsOverridesAndErrorsNamingTheKey) {
  const fs::path path = temp_file("recipe.yaml", kRecipe);
  Recipe recipe = Recipe::load(path.string(), {"optim.lr=1e-3", "train.samples=8"});
  EXPECT_DOUBLE_EQ(recipe.lr, 1e-3);
  EXPECT_EQ(recipe.samples, 8);
  EXPECT_EQ(recipe.batch_size, 8);  // default
  EXPECT_EQ(recipe.adapter.method, AdapterMethod::kRemix);
  EXPECT_EQ(recipe.adapter.num_experts, 4);
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"optim.lrr=1"}); }),
              AllOf(HasSubstr("command line"), HasSubstr("unknown key 'optim.lrr'")));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"train.samples=1"}); }), HasSubstr("train.samples"));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"train.batch_size=many"}); }),
              AllOf(HasSubstr("train.batch_size"), HasSubstr("expected an integer")));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.topk=2"}); }), HasSubstr("unknown field 'topk'"));
  const fs::path typo = temp_file("typo.yaml", std::string(kRecipe) + "schedul:\n  type: cosine\n");
  EXPECT_THAT(error_of([&] { Recipe::load(typo.string()); }),
              AllOf(HasSubstr("typo.yaml"), HasSubstr("unknown key 'schedul.type'")));
  const fs::path missing = temp_file("missing.yaml", "model:\n  path: m\ndata:\n  train: d\n");
  EXPECT_THAT(error_of([&] { Recipe::load(missing.string()); }), HasSubstr("missing required key 'output.dir'"));
}

TEST(Recipe, KeysThatDoNothingForTheMethodAreErrors) {
  const fs::path path = temp_file("recipe.yaml", kRecipe);  // method: remix
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.lora_alpha=16"}); }),
              AllOf(HasSubstr("lora_alpha has no effect with method remix"), HasSubstr("remove it")));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.smora_bias_rate=0.1"}); }),
              HasSubstr("smora_bias_rate has no effect"));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.method=lora", "adapter.num_experts=4"}); }),
              HasSubstr("num_experts has no effect with method lora"));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.method=topk", "train.samples=4"}); }),
              HasSubstr("train.samples acts only on ReMix routers"));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.method=lora", "adapter.num_experts=null",
                                                          "adapter.top_k=null", "optim.router_lr=1e-3"}); }),
              HasSubstr("optim.router_lr acts only on routed adapters"));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.router_objective=greedy"}); }),
              HasSubstr("router_objective must be one of \"rloo\", \"reinforce\", \"frozen\""));
  // A key that acts through method_pattern is fine; M = 1 is fine without a baseline.
  EXPECT_NO_THROW(Recipe::load(path.string(), {"adapter.method=lora", "adapter.lora_alpha=16",
                                               "adapter.method_pattern={up_proj: remix}"}));
  EXPECT_NO_THROW(Recipe::load(path.string(), {"adapter.router_objective=reinforce", "train.samples=1"}));
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"train.samples=1"}); }), HasSubstr("must be >= 2 for RLOO"));
}

TEST(Recipe, RouterClipAndSequenceRoutingOnThePrompt) {
  const fs::path path = temp_file("recipe.yaml", kRecipe);
  EXPECT_FALSE(Recipe::load(path.string()).clip_routers_separately.has_value());  // auto: decided by the routers
  EXPECT_EQ(Recipe::load(path.string(), {"train.router_clip=joint"}).clip_routers_separately, false);
  EXPECT_EQ(Recipe::load(path.string(), {"train.router_clip=separate"}).clip_routers_separately, true);
  EXPECT_THAT(error_of([&] { Recipe::load(path.string(), {"adapter.routing=sequence", "data.train_on_prompt=true"}); }),
              HasSubstr("routing: sequence cannot train on the prompt"));
  EXPECT_NO_THROW(Recipe::load(path.string(), {"adapter.routing=sequence"}));
}

TEST(Recipe, EveryShippedRecipeLoadsWithOnlyKeysThatAct) {
  for (const auto& entry : fs::directory_iterator(fs::path(REMORA_SOURCE_DIR) / "configs")) {
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(Recipe::load(entry.path().string()));
  }
}

TEST(Schedule, WarmupThenCosineToTheFloor) {
  Recipe recipe;
  recipe.warmup_steps = 10;
  recipe.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(lr_factor(recipe, 0, 110), 0.1);
  EXPECT_DOUBLE_EQ(lr_factor(recipe, 9, 110), 1.0);
  EXPECT_NEAR(lr_factor(recipe, 60, 110), 0.1 + 0.9 * 0.5, 1e-12);  // half way: cos(pi/2) = 0
  EXPECT_NEAR(lr_factor(recipe, 110, 110), 0.1, 1e-12);
  recipe.schedule = ScheduleType::kLinear;
  EXPECT_NEAR(lr_factor(recipe, 35, 110), 0.1 + 0.9 * 0.75, 1e-12);
}

TEST(Batching, EveryExampleOncePerEpochDeterministicBySeed) {
  std::vector<TrainingExample> examples(37);
  for (size_t i = 0; i < examples.size(); ++i) examples[i].ids.assign(1 + i % 9, 1);
  const auto plan = plan_epoch(examples, 4, 3, 0);
  std::multiset<size_t> seen;
  for (const auto& batch : plan) seen.insert(batch.begin(), batch.end());
  EXPECT_EQ(seen.size(), examples.size());
  EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()).size(), examples.size());
  EXPECT_EQ(plan, plan_epoch(examples, 4, 3, 0));
  EXPECT_NE(plan, plan_epoch(examples, 4, 3, 1));
}

class DataTest : public ::testing::Test {
 protected:
  // The Qwen3 tokenizer (byte-level BPE with a ChatML template), unpacked by the build.
  PretrainedTokenizer tokenizer_ = PretrainedTokenizer::load(std::string(REMORA_TOKENIZER_FILES) + "/qwen3");
  Recipe recipe_;
};

TEST_F(DataTest, LossOnlyOnResponseTokensForEveryFormat) {
  const fs::path path = temp_file("formats.jsonl",
                                  R"({"instruction": "Add 2 and 3.", "output": "5"})" "\n"
                                  R"({"prompt": "Capital of France?", "completion": " Paris"})" "\n"
                                  R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})" "\n"
                                  R"({"text": "plain text"})" "\n");
  Dataset data = load_dataset(path.string(), tokenizer_, recipe_);
  ASSERT_EQ(data.examples.size(), 4u);
  const int64_t eos = *tokenizer_.tokenizer.token_to_id("<|im_end|>");
  auto targets_text = [&](const TrainingExample& e) {
    std::vector<int64_t> ids;
    for (size_t t = 0; t < e.ids.size(); ++t) {
      if (e.target[t]) ids.push_back(e.ids[t]);
    }
    return ids;
  };
  std::vector<int64_t> five = tokenizer_.tokenizer.encode("5");
  five.push_back(eos);
  EXPECT_EQ(targets_text(data.examples[0]), five);
  std::vector<int64_t> paris = tokenizer_.tokenizer.encode(" Paris");
  paris.push_back(eos);
  EXPECT_EQ(targets_text(data.examples[1]), paris);
  // Chat: the assistant turn as the template renders it (ChatML: "...Hello!<|im_end|>\n"), never the user's.
  const std::string chat_targets = tokenizer_.tokenizer.decode(targets_text(data.examples[2]));
  EXPECT_THAT(chat_targets, HasSubstr("Hello!<|im_end|>"));
  EXPECT_THAT(chat_targets, ::testing::Not(HasSubstr("Hi")));
  EXPECT_THAT(chat_targets, ::testing::Not(HasSubstr("user")));
  EXPECT_EQ(targets_text(data.examples[3]).size() + 1, data.examples[3].ids.size());  // all but the first
  recipe_.train_on_prompt = true;
  EXPECT_EQ(targets_text(load_dataset(path.string(), tokenizer_, recipe_).examples[0]).size(),
            data.examples[0].ids.size() - 1);
}

TEST_F(DataTest, BadLinesAreNamedOrCountedAndLongOnesTruncated) {
  const fs::path path = temp_file("bad.jsonl", R"({"text": "fine"})" "\n" R"({"text": 7})" "\n" "{oops\n"
                                  R"({"question": "?"})" "\n");
  EXPECT_THAT(error_of([&] { load_dataset(path.string(), tokenizer_, recipe_); }),
              AllOf(HasSubstr("bad.jsonl:2"), HasSubstr("'text' must be a string")));
  recipe_.skip_bad_lines = true;
  Dataset data = load_dataset(path.string(), tokenizer_, recipe_);
  EXPECT_EQ(data.examples.size(), 1u);
  EXPECT_EQ(data.report.skipped_bad_lines, 3);
  const fs::path long_path = temp_file("long.jsonl", R"({"prompt": "a b c d e f g h i j k l", "completion": " m"})" "\n"
                                        R"({"prompt": "a", "completion": " b c d e f g h"})" "\n"
                                        R"({"prompt": "a", "completion": " b"})" "\n");
  recipe_.max_seq_len = 4;
  Dataset cut = load_dataset(long_path.string(), tokenizer_, recipe_);
  EXPECT_EQ(cut.report.truncated, 2);
  EXPECT_EQ(cut.report.dropped_no_target, 1);  // the first: its prompt fills all 4 tokens
  EXPECT_EQ(cut.examples.size(), 2u);
  for (const auto& e : cut.examples) EXPECT_LE(e.ids.size(), 4u);
  EXPECT_THAT(error_of([&] { load_dataset("/no/such.jsonl", tokenizer_, recipe_); }), HasSubstr("/no/such.jsonl"));
}

// A conversation renders the template once per message over its whole prefix; training stops
// rendering once the segments pass data.max_seq_len, which must give what rendering it all and
// truncating gives (hostile input: a 1 MB line of short messages took minutes).
TEST_F(DataTest, LongChatStopsRenderingPastMaxSeqLenWithTheSameExample) {
  // Plain ChatML, which renders a conversation turn by turn (Qwen3's own template rewrites earlier
  // assistant turns once a new user turn follows, which the chat format refuses).
  const fs::path dir = testing::scratch_path("chatml_tokenizer");
  fs::create_directories(dir);
  fs::copy_file(std::string(REMORA_TOKENIZER_FILES) + "/qwen3/tokenizer.json", dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << nlohmann::json{
      {"eos_token", "<|im_end|>"},
      {"chat_template", "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}}.dump();
  tokenizer_ = PretrainedTokenizer::load(dir.string());
  nlohmann::json messages = nlohmann::json::array();
  for (int i = 0; i < 240; ++i) {
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "message " + std::to_string(i)}});
  }
  const fs::path path = temp_file("long_chat.jsonl", nlohmann::json{{"messages", messages}}.dump() + "\n");
  const nlohmann::json line = nlohmann::json{{"messages", messages}};
  const auto all = example_segments(line, DataFormat::kChat, tokenizer_);
  for (int64_t max_seq_len : {37, 200, 4096}) {
    SCOPED_TRACE(max_seq_len);
    recipe_.max_seq_len = max_seq_len;
    Dataset data = load_dataset(path.string(), tokenizer_, recipe_);
    ASSERT_EQ(data.examples.size(), 1u);
    // The same example from every segment, tokenized one by one and cut to max_seq_len.
    std::vector<int64_t> ids;
    std::vector<uint8_t> target;
    for (const auto& segment : all) {
      const auto piece = tokenizer_.tokenizer.encode(segment.text, false);
      ids.insert(ids.end(), piece.begin(), piece.end());
      target.insert(target.end(), piece.size(), segment.target);
    }
    EXPECT_EQ(data.report.truncated, static_cast<int64_t>(ids.size()) > max_seq_len ? 1 : 0);
    if (static_cast<int64_t>(ids.size()) > max_seq_len) ids.resize(max_seq_len), target.resize(max_seq_len);
    EXPECT_EQ(data.examples[0].ids, ids);
    EXPECT_EQ(std::vector<uint8_t>(data.examples[0].target.begin() + 1, data.examples[0].target.end()),
              std::vector<uint8_t>(target.begin() + 1, target.end()));
    EXPECT_LT(example_segments(line, DataFormat::kChat, tokenizer_, max_seq_len).size(),
              max_seq_len < 4096 ? all.size() : all.size() + 1);
  }
  // A malformed message after the cut is still an error.
  messages.push_back({{"role", "user"}, {"content", 7}});
  const fs::path bad = temp_file("long_chat_bad.jsonl", nlohmann::json{{"messages", messages}}.dump() + "\n");
  recipe_.max_seq_len = 16;
  EXPECT_THAT(error_of([&] { load_dataset(bad.string(), tokenizer_, recipe_); }),
              AllOf(HasSubstr("long_chat_bad.jsonl:1"), HasSubstr("'content' must be a string")));
}

// The well-known accumulation bug normalises each micro-batch by its own tokens; the step must be
// normalised by all of its tokens, giving exactly the gradient of one big batch.
TEST(Objective, AccumulatedMicroBatchesEqualOneBatch) {
  for (AdapterMethod method : {AdapterMethod::kLora, AdapterMethod::kTopk}) {
    AdaptedModel adapted(random_model(toy_config("llama"), 3), adapter_config(method));
    randomize_b(adapted, 4);
    adapted.set_training(true);
    std::vector<TrainingExample> examples(3);
    for (size_t i = 0; i < 3; ++i) {
      const int64_t n = 4 + 3 * i;
      at::Tensor ids = random_ids(1, n, 512, i)[0].contiguous();
      examples[i].ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + n);
      examples[i].target.assign(n, 1);
      examples[i].target[0] = 0;
    }
    auto gradients = [&](const std::vector<std::vector<size_t>>& split) {
      std::vector<Batch> batches;
      double tokens = 0;
      for (const auto& indices : split) {
        batches.push_back(collate(examples, indices, 0));
        tokens += batches.back().target_tokens;
      }
      for (const auto& batch : batches) {
        // Balance losses are per micro-batch statistics; compare the cross-entropy part only.
        micro_batch_objective(adapted.model(), nullptr, batch, tokens, 1, 1).objective.backward();
      }
      std::vector<at::Tensor> grads;
      for (auto& p : adapted.adapter_parameters()) {
        grads.push_back(p.grad().clone());
        p.mutable_grad() = at::Tensor();
      }
      return grads;
    };
    const auto accumulated = gradients({{0, 1}, {2}});
    const auto whole = gradients({{0, 1, 2}});
    for (size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(at::allclose(accumulated[i], whole[i], 1e-5, 1e-6));
  }
}

}  // namespace
}  // namespace remora
