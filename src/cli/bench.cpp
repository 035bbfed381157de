// `remora bench`: the machine's GEMM throughput, then a model's prefill and decode speed, or a
// recipe's training throughput, against it.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "cli/common.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/resources.h"
#include "eval/generate.h"
#include "model/decoder.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace remora {
namespace {

struct BenchOptions {
  ModelOptions model;
  int64_t gemm_size = 1024;
  int64_t batch = 4;
  int64_t tokens = 256;
  int64_t new_tokens = 32;
  double min_seconds = 2.0;
  std::string recipe;                  // --recipe: time training instead of inference
  std::vector<std::string> overrides;  // recipe key=value
  int64_t steps = 20;                  // training steps timed (after 3 warm-up steps)
};

using Clock = std::chrono::steady_clock;

// Runs `work` until at least `min_seconds` have passed (after one warm-up call); seconds per call.
template <typename Work>
double seconds_per_call(Work&& work, double min_seconds) {
  work();
  int64_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    work();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  return elapsed / calls;
}

double gemm_flops_per_second(int64_t n, c10::ScalarType dtype, double min_seconds) {
  at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  return 2.0 * n * n * n / seconds_per_call([&] { at::mm(a, b); }, min_seconds);
}

// Forward FLOPs per token of the matmuls (2 per weight of every projection and the LM head) plus
// attention scores and mixing over `context` positions, the usual "model FLOPs" count.
double forward_flops_per_token(const ModelConfig& c, int64_t context) {
  const double d = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const double per_layer = 2 * (d * q + 2 * d * kv + q * d + 3 * d * c.intermediate_size) +
                           2 * 2 * q * context;
  return c.num_layers * per_layer + 2 * d * c.vocab_size;
}

// Prefill and decode of a model, against `reference` FLOP/s.
void bench_inference(const BenchOptions& options, double bf16, double fp32, nlohmann::json& result) {
  at::NoGradGuard no_grad;
  auto model = options.model.load();
  const ModelConfig& config = model->config();
  const double reference = model->options().dtype() == at::kFloat ? fp32 : bf16;
  at::Tensor ids = at::randint(config.vocab_size, {options.batch, options.tokens}, at::kLong);
  const double prefill_seconds =
      seconds_per_call([&] { model->forward(ids, {}).sum().item<float>(); }, options.min_seconds);  // .item() waits for a GPU
  const double tokens = static_cast<double>(options.batch * options.tokens);
  // Average context of a causal prefill is about half the sequence.
  const double prefill_flops = tokens * forward_flops_per_token(config, options.tokens / 2);
  result["prefill_tokens_per_second"] = tokens / prefill_seconds;
  result["prefill_gemm_fraction"] = prefill_flops / prefill_seconds / reference;

  GenerationOptions generation;
  generation.max_new_tokens = options.new_tokens;
  std::vector<std::vector<int64_t>> prompts(options.batch);
  for (int64_t r = 0; r < options.batch; ++r) {
    const int64_t prompt = std::min<int64_t>(16, options.tokens);
    prompts[r] = std::vector<int64_t>(ids[r].data_ptr<int64_t>(), ids[r].data_ptr<int64_t>() + prompt);
  }
  const double decode_seconds =
      seconds_per_call([&] { generate(*model, prompts, generation); }, options.min_seconds);
  result["decode_tokens_per_second"] = options.batch * options.new_tokens / decode_seconds;
  std::cout << "model " << options.model.dir << " (" << options.model.dtype << "), batch "
            << options.batch << ":\n  prefill " << options.tokens << " tokens: "
            << result["prefill_tokens_per_second"].get<double>() << " tokens/s, "
            << 100 * result["prefill_gemm_fraction"].get<double>() << "% of GEMM throughput\n"
            << "  decode " << options.new_tokens << " tokens after a 16-token prompt: "
            << result["decode_tokens_per_second"].get<double>() << " tokens/s\n";
}

// Runs the recipe for warm-up + `steps` steps into a scratch folder and reads its metrics. Model
// FLOPs per token: forward x 2 with a frozen base (forward, and backward to the activations only),
// x 3 when every weight trains; ReMix runs each input M times.
void bench_training(const BenchOptions& options, double bf16, double fp32, nlohmann::json& result) {
  namespace fs = std::filesystem;
  constexpr int64_t kWarmup = 3;
  const fs::path scratch = fs::temp_directory_path() / ("remora-bench-" + std::to_string(::getpid()));
  std::vector<std::string> overrides = options.overrides;
  for (const std::string& fixed : {"output.dir=" + scratch.string(), std::string("output.overwrite=true"),
                                   "train.steps=" + std::to_string(options.steps + kWarmup),
                                   std::string("output.checkpoint_every=0"), std::string("eval.every=0"),
                                   std::string("log.every=1"), std::string("data.validation_fraction=0")}) {
    overrides.push_back(fixed);
  }
  const Recipe recipe = Recipe::load(options.recipe, overrides);
  const ModelConfig config = ModelConfig::load(recipe.model_path);
  try {
    // REMORA_PROFILE=trace.json records every op of the run (chrome://tracing format).
    const char* profile = std::getenv("REMORA_PROFILE");
    std::unique_ptr<torch::autograd::profiler::RecordProfile> recorder;
    if (profile) recorder = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(profile));
    run_training(recipe, false);
  } catch (...) {
    fs::remove_all(scratch);
    throw;
  }
  double tokens = 0, seconds = 0;
  std::ifstream metrics(scratch / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    if (!record.contains("tokens") || record["step"].get<int64_t>() <= kWarmup) continue;
    tokens += record["tokens"].get<double>();
    seconds += record["tokens"].get<double>() / record["tokens_per_second"].get<double>();
  }
  fs::remove_all(scratch);
  const bool remix = !recipe.full_finetune && recipe.adapter.uses(AdapterMethod::kRemix);
  const double samples = remix ? static_cast<double>(recipe.samples) : 1.0;
  const double mean_length = tokens / (options.steps * recipe.batch_size * recipe.grad_accum);
  const double flops = tokens * samples * (recipe.full_finetune ? 3 : 2) *
                       forward_flops_per_token(config, static_cast<int64_t>(mean_length / 2));
  const double reference = recipe.full_finetune || recipe.model_dtype == "float32" ? fp32 : bf16;
  result["train_tokens_per_second"] = tokens / seconds;
  result["train_rows_per_token"] = samples;
  result["train_model_gflops"] = flops / seconds / 1e9;
  result["train_gemm_fraction"] = flops / seconds / reference;
  std::cout << "training " << options.recipe << " (" << options.steps << " steps after " << kWarmup
            << " warm-up): " << tokens / seconds << " input tokens/s (x" << samples << " rows), "
            << flops / seconds / 1e9 << " model GFLOP/s = " << 100 * flops / seconds / reference
            << "% of GEMM throughput\n";
}

void run_bench(const BenchOptions& options) {
  nlohmann::json result = {{"threads", at::get_num_threads()}, {"gemm_size", options.gemm_size}};
  const double bf16 = gemm_flops_per_second(options.gemm_size, at::kBFloat16, options.min_seconds);
  const double fp32 = gemm_flops_per_second(options.gemm_size, at::kFloat, options.min_seconds);
  result["gemm_bf16_gflops"] = bf16 / 1e9;
  result["gemm_fp32_gflops"] = fp32 / 1e9;
  std::cout << std::fixed << std::setprecision(1) << "GEMM " << options.gemm_size << "^3, "
            << at::get_num_threads() << " threads: bf16 " << bf16 / 1e9 << " GFLOP/s, fp32 "
            << fp32 / 1e9 << " GFLOP/s\n";
  if (!options.model.dir.empty()) bench_inference(options, bf16, fp32, result);
  if (!options.recipe.empty()) bench_training(options, bf16, fp32, result);
  result["peak_resident_mib"] = peak_resident_mib();
  std::cout << "peak resident memory " << result["peak_resident_mib"].get<double>() << " MiB\n"
            << result.dump() << "\n";
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* command = app.add_subcommand(
      "bench", "Measure GEMM throughput and, with --model, prefill and decode speed (last line: JSON)");
  command->add_option("--model", options->model.dir, "model folder to time (optional)");
  command->add_option("--dtype", options->model.dtype, "weight dtype: bfloat16 or float32")
      ->capture_default_str();
  command->add_option("--device", options->model.device, "cpu, cuda or cuda:N")->capture_default_str();
  command->add_option("--gemm-size", options->gemm_size, "square GEMM size")->capture_default_str();
  command->add_option("--batch", options->batch, "rows per forward")->capture_default_str();
  command->add_option("--tokens", options->tokens, "prefill length")->capture_default_str();
  command->add_option("--new-tokens", options->new_tokens, "decode length")->capture_default_str();
  command->add_option("--min-seconds", options->min_seconds, "time each measurement at least this long")
      ->capture_default_str();
  command->add_option("--recipe", options->recipe, "time training with this recipe YAML");
  command->add_option("--steps", options->steps, "training steps to time (after 3 warm-up steps)")
      ->capture_default_str();
  command->add_option("overrides", options->overrides, "recipe overrides key=value (with --recipe)");
  command->callback([options] { run_bench(*options); });
}

}  // namespace remora
