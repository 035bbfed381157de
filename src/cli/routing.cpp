// `remora routing`: how adapters' experts are used on a dataset, and training curves, as JSON + HTML.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <tuple>

#include "adapters/adapted_model.h"
#include "adapters/adapter_config.h"
#include "adapters/adapter_io.h"
#include "cli/common.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/file_util.h"
#include "eval/loglikelihood.h"
#include "eval/routing_report.h"
#include "model/loader.h"
#include "tokenizer/pretrained.h"
#include "train/data.h"

namespace remora {
namespace {

struct RoutingCommandOptions {
  std::string model_dir, dtype = "bfloat16", device = "cpu";
  std::vector<std::string> adapters, labels;
  std::vector<std::string> metrics, metrics_labels;
  std::string data;
  DataFormat format = DataFormat::kAuto;
  int64_t limit = 0, batch_size = 8, max_length = 2048;
  std::string json, html;
};

// "runs/topk/adapter" -> "topk"; "runs/topk/metrics.jsonl" -> "topk": the run folder names it.
std::string default_label(const std::string& path) {
  std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename() == "adapter" || p.extension() == ".jsonl") p = p.parent_path();
  return p.filename().empty() ? path : p.filename().string();
}

std::string label_at(const std::vector<std::string>& labels, size_t i, const std::string& path) {
  return i < labels.size() ? labels[i] : default_label(path);
}

AdapterRouting route_dataset(const std::shared_ptr<CausalLM>& base, const std::string& dir, const std::string& label,
                             const Dataset& data, int64_t batch_size) {
  auto adapted = load_adapter(base, dir);
  if (adapted->routers().empty()) fail(dir, ": the adapter has no routers (plain LoRA): nothing to report");
  RoutingCapture capture;
  adapted->routing().capture = &capture;
  const auto scores = score_targets(adapted->model(), data.examples, batch_size);
  adapted->routing().capture = nullptr;
  AdapterRouting out{label, dir, method_name(adapted->config().method), 0, routing_stats(capture)};
  double nll = 0;
  int64_t tokens = 0;
  for (const auto& score : scores) {
    nll -= score.log_likelihood;
    tokens += score.tokens;
  }
  out.loss = nll / std::max<int64_t>(tokens, 1);
  return out;
}

void print_summary(const AdapterRouting& adapter) {
  int width = 6;
  for (const auto& site : adapter.sites) width = std::max(width, static_cast<int>(site.site.size()));
  std::printf("%s (%s): loss %.4f\n", adapter.label.c_str(), adapter.method.c_str(), adapter.loss);
  std::printf("  %-*s %8s %8s %8s %8s %8s %8s\n", width, "router", "tokens", "meanESS", "minESS", "top-wt", "entropy",
              "subsets");
  for (const auto& site : adapter.sites) {
    char entropy[32] = "-";
    if (site.entropy) std::snprintf(entropy, sizeof(entropy), "%.3f", *site.entropy);
    std::printf("  %-*s %8lld %8.3f %8.3f %8.3f %8s %8lld\n", width, site.site.c_str(),
                static_cast<long long>(site.tokens), site.mean_ess, site.min_ess, site.mean_top_weight, entropy,
                static_cast<long long>(site.distinct_subsets));
  }
}

void run_routing(const RoutingCommandOptions& options) {
  if (options.json.empty() && options.html.empty()) fail("routing: give --json FILE and/or --html FILE");
  if (options.limit < 0) fail("--limit must be >= 0 (0 = all), got ", options.limit);
  if (options.batch_size < 1) fail("--batch-size must be >= 1, got ", options.batch_size);
  if (options.max_length < 2) fail("--max-length must be >= 2, got ", options.max_length);
  if (options.adapters.empty() && options.metrics.empty()) fail("routing: give --adapter (with --model, --data) and/or --metrics");
  if (!options.labels.empty() && options.labels.size() != options.adapters.size()) fail("--label: give one per --adapter");
  if (!options.metrics_labels.empty() && options.metrics_labels.size() != options.metrics.size()) {
    fail("--metrics-label: give one per --metrics");
  }
  // Labels name columns and tie a training log to its adapter: two runs must not share one.
  for (const auto& [inputs, labels, flag] : {std::tuple{&options.adapters, &options.labels, "--label"},
                                             std::tuple{&options.metrics, &options.metrics_labels, "--metrics-label"}}) {
    std::set<std::string> seen;
    for (size_t i = 0; i < inputs->size(); ++i) {
      const std::string label = label_at(*labels, i, (*inputs)[i]);
      if (!seen.insert(label).second) fail("two inputs are labelled '", label, "': name them with ", flag);
    }
  }
  std::vector<InputPath> inputs = {{options.model_dir, "--model"}, {options.data, "--data"}};
  for (const auto& adapter : options.adapters) inputs.push_back({adapter, "--adapter"});
  for (const auto& log : options.metrics) inputs.push_back({log, "--metrics"});
  for (const auto& [path, flag] : {std::pair{&options.json, "--json"}, std::pair{&options.html, "--html"}}) {
    if (path->empty()) continue;
    refuse_output_overlapping_inputs(*path, flag, inputs);
    require_writable_path(*path, flag);
  }
  RoutingReport report;
  // Curves first: a bad log is found before minutes of routing.
  for (size_t i = 0; i < options.metrics.size(); ++i) {
    report.training.push_back(
        read_training_curves(options.metrics[i], label_at(options.metrics_labels, i, options.metrics[i])));
  }
  if (!options.adapters.empty()) {
    if (options.model_dir.empty() || options.data.empty()) fail("routing: --adapter needs --model and --data");
    auto base = load_causal_lm(options.model_dir, parse_compute_dtype(options.dtype), parse_device(options.device));
    const PretrainedTokenizer tokenizer = PretrainedTokenizer::load(options.model_dir);
    Recipe reading;
    reading.max_seq_len = std::min(options.max_length, base->config().max_position_embeddings);
    reading.format = options.format;
    Dataset data = load_dataset(options.data, tokenizer, reading);
    if (options.limit > 0 && static_cast<int64_t>(data.examples.size()) > options.limit) data.examples.resize(options.limit);
    report.dataset = options.data;
    report.examples = static_cast<int64_t>(data.examples.size());
    for (size_t i = 0; i < options.adapters.size(); ++i) {
      // Each adapter is attached to the same base in turn; its destructor restores the base.
      report.adapters.push_back(route_dataset(base, options.adapters[i],
                                              label_at(options.labels, i, options.adapters[i]), data,
                                              options.batch_size));
      print_summary(report.adapters.back());
    }
  }
  const nlohmann::json json = to_json(report);
  const std::string page = options.html.empty() ? "" : render_html(json);  // everything made before anything is written
  if (!options.json.empty()) write_text_file_atomically(options.json, json.dump(1) + "\n");
  if (!options.html.empty()) write_text_file_atomically(options.html, page);
}

}  // namespace

void add_routing_command(CLI::App& app) {
  auto options = std::make_shared<RoutingCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "routing", "Report how adapters use their experts (ESS, load, top weight, subsets) and plot training logs");
  command->add_option("--model", options->model_dir, "Hugging Face model folder the adapters were trained on");
  command->add_option("--adapter", options->adapters, "routed adapter folder (repeatable: shown side by side)");
  command->add_option("--label", options->labels, "name of each --adapter in the report (default: its run folder)");
  command->add_option("--data", options->data, "JSONL data to route (any training format)");
  command->add_option("--format", options->format, "data format (auto, alpaca, chat, prompt_completion, text)")
      ->transform(CLI::CheckedTransformer(data_format_names(), CLI::ignore_case));
  command->add_option("--limit", options->limit, "route only the first N examples (0 = all)")->capture_default_str();
  command->add_option("--batch-size", options->batch_size, "examples run together")->capture_default_str();
  command->add_option("--max-length", options->max_length, "cut longer examples to this many tokens")
      ->capture_default_str();
  command->add_option("--dtype", options->dtype, "weight dtype in memory: bfloat16 or float32")->capture_default_str();
  command->add_option("--device", options->device, "cpu, cuda or cuda:N")->capture_default_str();
  command->add_option("--metrics", options->metrics, "a training run's metrics.jsonl to plot (repeatable)");
  command->add_option("--metrics-label", options->metrics_labels, "name of each --metrics log (default: its run folder)");
  command->add_option("--json", options->json, "write the report as JSON");
  command->add_option("--html", options->html, "write the report as a self-contained HTML page");
  command->callback([options] { run_routing(*options); });
}

}  // namespace remora
