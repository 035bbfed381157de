// `remora serve`: an OpenAI-compatible HTTP server for the base model and any number of adapters.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/common.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/loader.h"
#include "serve/adapter_set.h"
#include "serve/engine.h"
#include "serve/http_server.h"
#include "tokenizer/pretrained.h"

namespace remora {
namespace {

struct ServeCommandOptions {
  std::string model;
  std::vector<std::string> adapters;  // NAME=DIR
  std::string served_model_name;
  std::string dtype = "bfloat16";
  std::string device = "cpu";
  ServerOptions server;
  EngineOptions engine;
  double shutdown_timeout = 30;
};

void run_serve(const ServeCommandOptions& options) {
  // SIGTERM and SIGINT are taken by one thread with sigwait; every thread started from here on
  // (LibTorch's, httplib's, the engine's) inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (!(options.shutdown_timeout >= 0)) fail("--shutdown-timeout must be >= 0, got ", options.shutdown_timeout);

  auto base = load_causal_lm(options.model, parse_compute_dtype(options.dtype), parse_device(options.device));
  const PretrainedTokenizer tokenizer = PretrainedTokenizer::load(options.model);
  AdapterSet models(base);
  ModelCatalog catalog;
  catalog.base = options.served_model_name.empty() ? options.model : options.served_model_name;
  catalog.context = base->config().max_position_embeddings;
  catalog.kv_cache_tokens = options.engine.kv_cache_tokens;
  catalog.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& item : options.adapters) {
    const size_t equals = item.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == item.size()) {
      fail("--adapter: expected NAME=DIR, got '", item, "'");
    }
    const std::string name = item.substr(0, equals);
    if (name == catalog.base) fail("--adapter: the name '", name, "' is the base model's");
    models.add(name, item.substr(equals + 1));
    catalog.adapters.push_back(name);
  }
  models.install();

  Engine engine(models, tokenizer.tokenizer, base->config().eos_token_ids, options.engine);
  ApiServer server(engine, catalog, tokenizer, options.server);
  server.bind();
  std::cerr << "remora serve: listening on http://" << options.server.host << ":" << server.port() << " (models: " << catalog.base;
  for (const auto& name : catalog.adapters) std::cerr << ", " << name;
  std::cerr << ")" << std::endl;
  const ModelConfig& config = base->config();
  const double cache_mib = static_cast<double>(options.engine.kv_cache_tokens) * config.num_layers * 2 * config.num_kv_heads *
                           config.head_dim * c10::elementSize(base->options().dtype().toScalarType()) / (1 << 20);
  std::cerr << "remora serve: up to " << options.engine.max_num_seqs << " sequences per batch, KV cache budget "
            << options.engine.kv_cache_tokens << " positions (" << static_cast<int64_t>(cache_mib + 0.5) << " MiB)" << std::endl;

  std::atomic<bool> stopping{false};
  std::thread watcher([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    stopping = true;
    std::cerr << "remora serve: " << (signal_number == SIGTERM ? "SIGTERM" : "SIGINT") << ", finishing requests in flight (up to "
              << options.shutdown_timeout << " s)" << std::endl;
    server.drain_and_stop(std::chrono::milliseconds(static_cast<int64_t>(options.shutdown_timeout * 1000)));
  });
  server.run();
  // The listener can also end on its own (an accept error): wake the watcher so that it drains too.
  if (!stopping) pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::cerr << "remora serve: stopped" << std::endl;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto options = std::make_shared<ServeCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "serve", "OpenAI-compatible HTTP server (completions, chat) for the base model and adapters, with continuous batching");
  command->add_option("--model", options->model, "model folder (config.json, weights, tokenizer.json)")->required();
  command->add_option("--adapter", options->adapters,
                      "NAME=DIR: serve the adapter folder DIR as model NAME (repeatable; any method, routed ones included)");
  command->add_option("--served-model-name", options->served_model_name, "the base model's name in the API (default: --model as given)");
  command->add_option("--dtype", options->dtype, "bfloat16 or float32")->capture_default_str();
  command->add_option("--device", options->device, "cpu, cuda or cuda:N")->capture_default_str();
  command->add_option("--host", options->server.host, "address to listen on")->capture_default_str();
  command->add_option("--port", options->server.port, "port to listen on (0: any free port, printed at start)")->check(CLI::Range(0, 65535))->capture_default_str();
  command->add_option("--api-key", options->server.api_key, "require Authorization: Bearer KEY on /v1/ routes")
      ->envname("REMORA_API_KEY");
  command->add_option("--max-num-seqs", options->engine.max_num_seqs, "sequences decoded together in one batch")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))->capture_default_str();
  command->add_option("--kv-cache-tokens", options->engine.kv_cache_tokens,
                      "KV cache budget in positions over all running sequences (rows x columns); bounds its memory")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32))->capture_default_str();
  command->add_option("--max-queue", options->engine.max_queue, "requests waiting for the batch beyond which new ones get 429")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))->capture_default_str();
  command->add_flag("--padded-attention", [options](int64_t) { options->engine.exact_batching = false; },
                    "one attention over the batch's padded cache instead of row by row (fp32, GPU; bf16 decode on the "
                    "CPU gives the same bits either way): faster with many rows, but a row's rounding (and so, "
                    "rarely, a token) then depends on its neighbours' lengths");
  command->add_option("--max-body-bytes", options->server.max_body_bytes, "larger request bodies get 413")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30))->capture_default_str();
  command->add_option("--http-threads", options->server.http_threads, "connections served at once")
      ->check(CLI::Range(4, 4096))->capture_default_str();
  command->add_option("--shutdown-timeout", options->shutdown_timeout,
                      "seconds requests in flight get to finish after SIGTERM")->capture_default_str();
  command->callback([options] { run_serve(*options); });
}

}  // namespace remora
