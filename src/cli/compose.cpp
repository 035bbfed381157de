// `remora compose`: one routed adapter whose experts are existing LoRA folders.
#include <filesystem>
#include <iostream>
#include <set>

#include "adapters/adapter_io.h"
#include "adapters/compose.h"
#include "cli/common.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/loader.h"
#include "tokenizer/pretrained.h"
#include "train/batching.h"
#include "train/data.h"
#include "train/recipe.h"

namespace remora {
namespace {

struct ComposeOptions {
  std::string model;
  std::vector<std::string> experts;      // NAME=DIR
  std::vector<std::string> expert_data;  // NAME=FILE (retrieval)
  std::string router = "molora";
  int64_t top_k = 1;
  int64_t retrieval_layer = -1;  // -1: the middle layer
  int64_t retrieval_samples = 256;
  int64_t max_seq_len = 512;
  bool train_experts = false;
  std::string dtype = "bfloat16";
  uint64_t seed = 0;
  std::string out;
  bool overwrite = false;
};

std::pair<std::string, std::string> split_assignment(const std::string& text, const char* flag) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
    fail(flag, ": expected NAME=PATH, got '", text, "'");
  }
  return {text.substr(0, equals), text.substr(equals + 1)};
}

// The mean over examples of each prompt's mean hidden state (base model, layer retrieval_layer).
at::Tensor prompt_centroid(AdaptedModel& adapted, const std::vector<TrainingExample>& examples, int64_t pad_id) {
  at::Tensor sum;
  const size_t batch = 8;
  for (size_t first = 0; first < examples.size(); first += batch) {
    std::vector<size_t> indices;
    for (size_t i = first; i < std::min(examples.size(), first + batch); ++i) indices.push_back(i);
    const Batch b = collate(examples, indices, pad_id);
    at::Tensor embedding = adapted.embed_prompts(b.ids, b.attention, b.routing_mask).sum(0);
    sum = sum.defined() ? sum + embedding : embedding;
  }
  return sum / static_cast<double>(examples.size());
}

void run_compose(const ComposeOptions& options) {
  std::vector<ExpertFolder> experts;
  std::vector<InputPath> inputs = {{options.model, "--model"}};
  std::set<std::string> names;
  for (const auto& text : options.experts) {
    auto [name, dir] = split_assignment(text, "--expert");
    if (!names.insert(name).second) fail("--expert: the name '", name, "' is given twice");
    experts.push_back({name, dir});
    inputs.push_back({dir, "--expert " + name});
  }
  std::map<std::string, std::string> data;
  for (const auto& text : options.expert_data) {
    auto [name, file] = split_assignment(text, "--expert-data");
    if (!names.count(name)) fail("--expert-data: no --expert is named '", name, "'");
    if (!data.emplace(name, file).second) fail("--expert-data: the name '", name, "' is given twice");
    inputs.push_back({file, "--expert-data " + name});
  }
  refuse_output_overlapping_inputs(options.out, "--out", inputs);
  if (path_exists(options.out) && !options.overwrite) {
    fail(options.out, ": already exists (pass --overwrite to replace it)");  // before the slow part
  }
  const bool retrieval = options.router == "retrieval";
  if (retrieval) {
    for (const auto& e : experts) {
      if (!data.count(e.name)) fail("--router retrieval: expert '", e.name, "' needs --expert-data ", e.name, "=FILE");
    }
  } else if (!data.empty()) {
    fail("--expert-data is used only by --router retrieval");
  }

  auto base = load_causal_lm(options.model, parse_compute_dtype(options.dtype, "--dtype"));
  AdapterConfig routing;
  routing.method = parse_method(options.router, "--router");
  routing.top_k = options.top_k;
  routing.freeze_experts = !options.train_experts;
  routing.retrieval_layer = options.retrieval_layer >= 0 ? options.retrieval_layer : base->config().num_layers / 2;
  routing.base_model_name_or_path = options.model;
  auto composed = compose_adapter(base, experts, routing, options.seed);

  if (retrieval) {
    const PretrainedTokenizer tokenizer = PretrainedTokenizer::load(options.model);
    Recipe reading;  // how the data files are read: as training data, each prompt cut to max_seq_len
    reading.max_seq_len = options.max_seq_len;
    const ModelConfig& mc = base->config();
    const int64_t pad_id = mc.pad_token_id.value_or(mc.eos_token_ids.empty() ? 0 : mc.eos_token_ids[0]);
    std::vector<at::Tensor> centroids;
    for (const auto& e : experts) {
      Dataset dataset = load_dataset(data[e.name], tokenizer, reading);
      auto& examples = dataset.examples;
      REMORA_CHECK(!examples.empty(), data[e.name], ": no examples to measure expert '", e.name, "' by");
      if (static_cast<int64_t>(examples.size()) > options.retrieval_samples) examples.resize(options.retrieval_samples);
      centroids.push_back(prompt_centroid(*composed, examples, pad_id));
    }
    set_retrieval_centroids(*composed, at::stack(centroids));
  }
  save_adapter(*composed, options.out, options.overwrite);
  std::cout << "wrote " << options.out << ": " << options.router << " over " << experts.size() << " LoRAs on "
            << composed->adapted().size() << " projections, " << composed->trainable_parameter_count()
            << " trainable parameters (experts " << (options.train_experts ? "trainable" : "frozen") << ")\n";
}

}  // namespace

void add_compose_command(CLI::App& app) {
  auto options = std::make_shared<ComposeOptions>();
  CLI::App* command = app.add_subcommand(
      "compose", "One routed adapter whose experts are existing LoRA folders (MoLE, LoRA-Flow, ReMix, retrieval)");
  command->add_option("--model", options->model, "base model folder")->required();
  command->add_option("--expert", options->experts, "NAME=DIR: a LoRA / rsLoRA folder for this base (repeat)")
      ->required();
  command->add_option("--router", options->router, "molora (MoLE-style), topk, remix, loraflow or retrieval")
      ->check(CLI::IsMember({"molora", "topk", "remix", "loraflow", "retrieval"}))
      ->capture_default_str();
  command->add_option("--top-k", options->top_k, "experts per token (topk, remix) or sequence (retrieval)")
      ->capture_default_str();
  command->add_option("--expert-data", options->expert_data,
                      "NAME=FILE: JSONL data of that expert's task, whose prompts give its centroid (retrieval)");
  command->add_option("--retrieval-layer", options->retrieval_layer,
                      "layer whose input hidden state embeds a prompt (default: the middle layer)");
  command->add_option("--retrieval-samples", options->retrieval_samples, "examples per expert for its centroid")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  command->add_option("--max-seq-len", options->max_seq_len, "tokens kept of each --expert-data example")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  command->add_flag("--train-experts", options->train_experts,
                    "let training update the experts too (default: freeze_experts, only routers learn)");
  command->add_option("--dtype", options->dtype, "dtype the base runs in to measure centroids")->capture_default_str();
  command->add_option("--seed", options->seed, "router initialisation seed")->check(seed_validator())->capture_default_str();
  command->add_option("--out", options->out, "output adapter folder")->required();
  command->add_flag("--overwrite", options->overwrite, "replace an existing output folder");
  command->callback([options] { run_compose(*options); });
}

}  // namespace remora
