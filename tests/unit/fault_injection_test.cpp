// Fault injection through the WriteEnv seam: every writer, failing at each of its steps (a write that
// fills the disk, an fsync, a close, a rename, a mkdir), leaves the previous version intact and no
// temporaries; a training run failing at any step resumes to the adapter an uninterrupted run makes.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "adapters/adapter_io.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/write_env.h"
#include "io/safetensors.h"
#include "model/loader.h"
#include "test_models.h"
#include "tokenizer/bpe_trainer.h"
#include "train/checkpoint.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using testing::random_model;
using testing::toy_config;

// Fails the `fail_at`-th step (1-based; 0 = never) with `error`; a failing write first writes half its
// bytes, as a filling disk does. Counts every step either way.
class FailingEnv : public WriteEnv {
 public:
  int64_t fail_at = 0;
  int error = ENOSPC;
  int64_t steps = 0;
  bool failed = false;

  int open(const std::string& path, const char* mode, std::FILE** file) override {
    return now() ? error : WriteEnv::open(path, mode, file);
  }
  int write(std::FILE* file, const void* data, size_t bytes) override {
    if (!now()) return WriteEnv::write(file, data, bytes);
    WriteEnv::write(file, data, bytes / 2);
    return error;
  }
  int sync(std::FILE* file) override { return now() ? error : WriteEnv::sync(file); }
  int close(std::FILE* file) override {
    const int real = WriteEnv::close(file);  // the FILE is released either way, as fclose does
    return now() ? error : real;
  }
  int rename(const std::string& from, const std::string& to) override {
    return now() ? error : WriteEnv::rename(from, to);
  }
  int make_directory(const std::string& path) override { return now() ? error : WriteEnv::make_directory(path); }

 private:
  bool now() {
    const bool hit = ++steps == fail_at;
    failed = failed || hit;
    return hit;
  }
};

// Every file under `dir` (relative path -> bytes), folders as empty entries.
std::map<std::string, std::string> contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    std::string bytes;
    if (entry.is_regular_file()) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::ostringstream buffer;
      buffer << in.rdbuf();
      bytes = buffer.str();
    }
    out[fs::relative(entry.path(), dir).string()] = bytes;
  }
  return out;
}

class FaultInjection : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("remora_faults_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Runs `write` (which replaces what lives in `root_`) failing at every one of its steps in turn: each
  // time it must throw and leave `root_` exactly as `before`. Returns the number of steps.
  int64_t fail_at_every_step(const std::function<void()>& write) {
    const auto before = contents(root_);
    FailingEnv counting;
    int64_t total = 0;
    {
      // Counted on a scratch copy, so the real folder keeps its old version for the failing runs.
      const fs::path saved = root_.string() + ".saved";
      fs::remove_all(saved);
      fs::copy(root_, saved, fs::copy_options::recursive);
      {
        ScopedWriteEnv scope(counting);
        write();
      }
      total = counting.steps;
      fs::remove_all(root_);
      fs::rename(saved, root_);
    }
    EXPECT_GT(total, 0);
    for (int64_t k = 1; k <= total; ++k) {
      for (int error : {ENOSPC, EIO}) {
        FailingEnv env;
        env.fail_at = k;
        env.error = error;
        bool threw = false;
        {
          ScopedWriteEnv scope(env);
          try {
            write();
          } catch (const Error&) {
            threw = true;
          }
        }
        EXPECT_TRUE(threw) << "step " << k << " of " << total << " failed without an error";
        EXPECT_EQ(contents(root_), before) << "step " << k << " of " << total << " (errno " << error << ")";
      }
    }
    return total;
  }

  fs::path root_;
};

TEST_F(FaultInjection, SafetensorsFileKeepsItsOldVersion) {
  const std::string path = (root_ / "t.safetensors").string();
  write_safetensors(path, {{"a", at::arange(6, at::kFloat)}});
  const int64_t steps = fail_at_every_step([&] { write_safetensors(path, {{"a", at::ones({3}, at::kFloat)}}); });
  EXPECT_GE(steps, 5);  // open, header writes, data write, sync, close, rename
}

TEST_F(FaultInjection, AdapterFolderKeepsItsOldVersion) {
  auto model = random_model(toy_config("llama"));
  AdapterConfig config;
  config.target_modules = "all-linear";
  AdaptedModel first(model, config, 1);
  const std::string dir = (root_ / "adapter").string();
  save_adapter(first, dir);
  first.detach();
  AdaptedModel second(model, config, 2);
  fail_at_every_step([&] { save_adapter(second, dir, /*overwrite=*/true); });
}

TEST_F(FaultInjection, ModelFolderKeepsItsOldVersion) {
  auto model = random_model(toy_config("qwen3"));
  const std::string dir = (root_ / "model").string();
  replace_folder_atomically(dir, false, [&](const std::string& temp) { save_hf_checkpoint(*model, temp); });
  auto other = random_model(toy_config("qwen3"), 7);
  fail_at_every_step([&] {
    replace_folder_atomically(dir, true, [&](const std::string& temp) { save_hf_checkpoint(*other, temp); });
  });
}

TEST_F(FaultInjection, TextOutputKeepsItsOldVersion) {
  const std::string path = (root_ / "results.json").string();
  write_text_file_atomically(path, "{\"old\": true}\n");
  fail_at_every_step([&] { write_text_file_atomically(path, "{\"new\": true}\n"); });
}

// A model folder with a tokenizer, a data file and a recipe for a 3-step LoRA run with a checkpoint
// after every step, in one thread (bit-exact resumption needs it).
class TrainingFaults : public FaultInjection {
 protected:
  void SetUp() override {
    FaultInjection::SetUp();
    std::string data;
    std::vector<std::string> texts;
    for (const char* colour : {"red", "green", "blue", "white", "black", "yellow"}) {
      const std::string prompt = std::string("Name a thing that is ") + colour + ".";
      const std::string answer = std::string("A ") + colour + " thing.";
      data += nlohmann::json{{"instruction", prompt}, {"output", answer}}.dump() + "\n";
      texts.push_back(prompt + " " + answer);
    }
    model_dir_ = (root_ / "model").string();
    const auto tokenizer = train_byte_level_bpe(texts, BpeTrainerOptions{300});
    auto model = random_model(toy_config("llama", {{"vocab_size", 300}, {"eos_token_id", 2}}));
    replace_folder_atomically(model_dir_, false, [&](const std::string& temp) {
      save_hf_checkpoint(*model, temp);
      write_text_file_atomically(temp + "/tokenizer.json", tokenizer.dump());
      write_text_file_atomically(temp + "/tokenizer_config.json", R"({"eos_token": "<|im_end|>"})");
    });
    data_ = (root_ / "data.jsonl").string();
    write_text_file_atomically(data_, data);
    recipe_ = (root_ / "recipe.yaml").string();
    write_text_file_atomically(recipe_, "model: {path: " + model_dir_ + ", dtype: float32}\n"
                               "adapter: {method: lora, r: 4, lora_alpha: 8, target_modules: all-linear}\n"
                               "data: {train: " + data_ + ", max_seq_len: 64, validation_fraction: 0}\n"
                               "train: {steps: 3, batch_size: 2, seed: 3}\n"
                               "optim: {lr: 1.0e-2}\n"
                               "output: {checkpoint_every: 1, keep_last: 2}\n"
                               "threads: 1\n");
  }

  Recipe recipe(const std::string& out, bool overwrite = false) const {
    return Recipe::load(recipe_, {"output.dir=" + out, std::string("output.overwrite=") + (overwrite ? "true" : "false")});
  }

  static std::string adapter_bytes(const std::string& out) {
    return contents(fs::path(out) / "adapter")["adapter_model.safetensors"];
  }

  std::string model_dir_, data_, recipe_;
};

TEST_F(TrainingFaults, AFailedWriteAtAnyStepResumesToTheUninterruptedAdapter) {
  const std::string reference = (root_ / "reference").string();
  FailingEnv counting;
  {
    ScopedWriteEnv scope(counting);
    ASSERT_EQ(run_training(recipe(reference), false), 0);
  }
  const std::string expected = adapter_bytes(reference);
  ASSERT_FALSE(expected.empty());
  const auto model_before = contents(model_dir_);

  int64_t resumed = 0, restarted = 0;
  for (int64_t k = 1; k <= counting.steps; ++k) {
    const std::string out = (root_ / ("run" + std::to_string(k))).string();
    FailingEnv env;
    env.fail_at = k;
    {
      ScopedWriteEnv scope(env);
      EXPECT_THROW(run_training(recipe(out), false), Error) << "step " << k;
    }
    // The run either left a checkpoint to resume from or nothing at all.
    if (latest_checkpoint(out)) {
      ASSERT_EQ(run_training(recipe(out), true), 0) << "resuming after step " << k;
      ++resumed;
    } else {
      EXPECT_FALSE(fs::exists(out)) << "step " << k << ": a failed run without a checkpoint left its folder";
      ASSERT_EQ(run_training(recipe(out), false), 0);
      ++restarted;
    }
    EXPECT_EQ(adapter_bytes(out), expected) << "after a failure at write step " << k << " of " << counting.steps;
    fs::remove_all(out);
  }
  EXPECT_GT(resumed, 0);
  EXPECT_GT(restarted, 0);
  EXPECT_EQ(contents(model_dir_), model_before);
}

// The recipe key reaches the trainer: a run that recomputes its layers (with adapter dropout, whose
// masks the recompute must draw again) writes the adapter bit for bit.
TEST_F(TrainingFaults, ActivationCheckpointingTrainsTheSameAdapter) {
  auto recipe_with = [&](const std::string& out, bool checkpointing) {
    return Recipe::load(recipe_, {"output.dir=" + out, "adapter.lora_dropout=0.1",
                                  std::string("train.activation_checkpointing=") + (checkpointing ? "true" : "false")});
  };
  const std::string plain = (root_ / "plain").string(), checkpointed = (root_ / "checkpointed").string();
  ASSERT_EQ(run_training(recipe_with(plain, false), false), 0);
  ASSERT_EQ(run_training(recipe_with(checkpointed, true), false), 0);
  EXPECT_FALSE(adapter_bytes(plain).empty());
  EXPECT_EQ(adapter_bytes(checkpointed), adapter_bytes(plain));
}

}  // namespace
}  // namespace remora
