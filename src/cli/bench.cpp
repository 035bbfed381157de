// `remora bench`: the machine's GEMM throughput, then a model's prefill and decode speed, or a
// recipe's training throughput, against it.
#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/allocator.h"
#include "cli/common.h"
#include "cli/profile_trace.h"
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
  int64_t nproc = 1;                   // --nproc: also time this many single-thread workers
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
  double decode_seconds = 0;
  profiled([&] { decode_seconds = seconds_per_call([&] { generate(*model, prompts, generation); }, options.min_seconds); });
  result["decode_tokens_per_second"] = options.batch * options.new_tokens / decode_seconds;
  std::cout << "model " << options.model.dir << " (" << options.model.dtype << "), batch "
            << options.batch << ":\n  prefill " << options.tokens << " tokens: "
            << result["prefill_tokens_per_second"].get<double>() << " tokens/s, "
            << 100 * result["prefill_gemm_fraction"].get<double>() << "% of GEMM throughput\n"
            << "  decode " << options.new_tokens << " tokens after a 16-token prompt: "
            << result["decode_tokens_per_second"].get<double>() << " tokens/s\n";
}

constexpr int64_t kWarmupSteps = 3;

// Input tokens and seconds of the timed steps (after the warm-up) in a run's metrics.jsonl.
std::pair<double, double> timed_tokens(const std::filesystem::path& metrics_path) {
  double tokens = 0, seconds = 0;
  std::ifstream metrics(metrics_path);
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    if (!record.contains("tokens") || record["step"].get<int64_t>() <= kWarmupSteps) continue;
    tokens += record["tokens"].get<double>();
    seconds += record["tokens"].get<double>() / record["tokens_per_second"].get<double>();
  }
  REMORA_CHECK(seconds > 0, metrics_path.string(), ": no timed steps recorded");
  return {tokens, seconds};
}

// A port on the loopback interface that nothing listens on now, for a benchmark's rendezvous.
int64_t free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  const bool ok = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&address), size) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0;
  if (fd >= 0) close(fd);
  REMORA_CHECK(ok, "bench: cannot find a free loopback port: ", std::strerror(errno));
  return ntohs(address.sin_port);
}

// Runs `remora launch --nproc-per-node workers -- train RECIPE overrides` and waits for it.
void run_launched(const std::string& recipe, const std::vector<std::string>& overrides, int64_t workers) {
  std::vector<std::string> arguments = {"remora", "launch", "--nproc-per-node", std::to_string(workers),
                                        "--master-port", std::to_string(free_loopback_port()), "--", "train", recipe};
  arguments.insert(arguments.end(), overrides.begin(), overrides.end());
  const std::string executable = std::filesystem::read_symlink("/proc/self/exe").string();
  const pid_t pid = fork();
  REMORA_CHECK(pid >= 0, "bench: cannot start the workers: ", std::strerror(errno));
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : arguments) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(executable.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  REMORA_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench: the ", workers, "-worker training run failed");
}

// Runs the recipe for warm-up + `steps` steps into a scratch folder and reads its metrics. Model
// FLOPs per token: forward x 2 with a frozen base (forward, and backward to the activations only),
// x 3 when every weight trains; ReMix runs each input M times. With --nproc N, the same micro-batches
// also run on N workers of one thread each (train.batch_size each), against one worker of N threads
// (train.batch_size x N): the scaling efficiency is the ratio of their throughputs.
void bench_training(const BenchOptions& options, double bf16, double fp32, nlohmann::json& result) {
  namespace fs = std::filesystem;
  REMORA_CHECK(options.nproc >= 1 && options.nproc <= machine_cores(), "--nproc: expected 1 to ", machine_cores(),
               " (the machine's cores), got ", options.nproc);
  const fs::path scratch = fs::temp_directory_path() / ("remora-bench-" + std::to_string(::getpid()));
  const fs::path workers_scratch = scratch.string() + "-workers";
  std::vector<std::string> overrides = options.overrides;
  for (const std::string& fixed : {std::string("output.overwrite=true"),
                                   "train.steps=" + std::to_string(options.steps + kWarmupSteps),
                                   std::string("output.checkpoint_every=0"), std::string("eval.every=0"),
                                   std::string("log.every=1"), std::string("data.validation_fraction=0")}) {
    overrides.push_back(fixed);
  }
  const Recipe per_worker = Recipe::load(options.recipe, overrides);
  std::vector<std::string> single = overrides;
  single.push_back("output.dir=" + scratch.string());
  if (options.nproc > 1) {
    single.push_back("threads=" + std::to_string(options.nproc));
    single.push_back("train.batch_size=" + std::to_string(per_worker.batch_size * options.nproc));
  }
  const Recipe recipe = Recipe::load(options.recipe, single);
  const ModelConfig config = ModelConfig::load(recipe.model_path);
  std::pair<double, double> workers_timed;
  try {
    profiled([&] { run_training(recipe, false); });
    if (options.nproc > 1) {
      std::vector<std::string> launched = overrides;
      launched.push_back("output.dir=" + workers_scratch.string());
      launched.push_back("threads=1");
      run_launched(options.recipe, launched, options.nproc);
      workers_timed = timed_tokens(workers_scratch / "metrics.jsonl");
    }
  } catch (...) {
    fs::remove_all(scratch);
    fs::remove_all(workers_scratch);
    throw;
  }
  const auto [tokens, seconds] = timed_tokens(scratch / "metrics.jsonl");
  fs::remove_all(scratch);
  fs::remove_all(workers_scratch);
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
  std::cout << "training " << options.recipe << " (" << options.steps << " steps after " << kWarmupSteps
            << " warm-up";
  if (options.nproc > 1) std::cout << ", 1 worker of " << options.nproc << " threads";
  std::cout << "): " << tokens / seconds << " input tokens/s (x" << samples << " rows), " << flops / seconds / 1e9
            << " model GFLOP/s = " << 100 * flops / seconds / reference << "% of GEMM throughput\n";
  if (options.nproc > 1) {
    const double rate = workers_timed.first / workers_timed.second;
    result["train_workers"] = options.nproc;
    result["train_workers_tokens_per_second"] = rate;
    result["train_scaling_efficiency"] = rate / (tokens / seconds);
    std::cout << "  " << options.nproc << " workers of 1 thread (c10d): " << rate
              << " input tokens/s, scaling efficiency " << rate / (tokens / seconds) << "\n";
  }
}

void run_bench(const BenchOptions& options) {
  nlohmann::json result = {
      {"threads", at::get_num_threads()}, {"gemm_size", options.gemm_size}, {"allocator", allocator_description()}};
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
  command->add_option("--nproc", options->nproc,
                      "with --recipe: also train on N workers of one thread (remora launch) and report the "
                      "scaling efficiency against one worker of N threads")
      ->capture_default_str();
  command->add_option("overrides", options->overrides, "recipe overrides key=value (with --recipe)");
  command->callback([options] { run_bench(*options); });
}

}  // namespace remora
