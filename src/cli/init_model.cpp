// `remora init-model`: a randomly initialised checkpoint in HF layout, for tests, demos and benchmarks.
#include <unistd.h>

#include <iostream>

#include "cli/common.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/loader.h"
#include "model/presets.h"
#include "tokenizer/pretrained.h"

namespace remora {
namespace {

struct InitModelOptions {
  std::string arch = "llama";
  std::string preset = "toy";
  std::string out;
  std::vector<std::string> overrides;
  std::string dtype = "bfloat16";
  uint64_t seed = 0;
  bool overwrite = false;
  std::string tokenizer;  // folder with tokenizer.json (+ tokenizer_config.json, chat_template.jinja)
};

// Sizes the embedding to the tokenizer and takes its bos/eos ids, so the model and its text agree.
void apply_tokenizer(nlohmann::json& config, const std::string& dir) {
  const PretrainedTokenizer tok = PretrainedTokenizer::load(dir);
  config["vocab_size"] = tok.tokenizer.vocab_size();
  for (const auto& [field, text] : {std::pair<const char*, std::string>{"bos_token_id", tok.bos_token},
                                    std::pair<const char*, std::string>{"eos_token_id", tok.eos_token}}) {
    if (text.empty()) continue;
    const auto id = tok.tokenizer.token_to_id(text);
    if (!id) fail(dir, "/tokenizer_config.json: ", field == std::string("bos_token_id") ? "bos" : "eos", "_token '", text,
                  "' is not in tokenizer.json");
    config[field] = *id;
  }
}

void run_init_model(const InitModelOptions& options) {
  refuse_output_overlapping_inputs(options.out, "--out", {{options.tokenizer, "--tokenizer"}});
  nlohmann::json json = preset_config(options.arch, options.preset);
  if (!options.tokenizer.empty()) apply_tokenizer(json, options.tokenizer);
  for (const auto& assignment : options.overrides) apply_json_assignment(json, assignment, "--set");
  const ModelConfig config = ModelConfig::from_json(json, "init-model config (preset + --set)");
  const c10::ScalarType dtype = parse_compute_dtype(options.dtype);
  const double std = json.value("initializer_range", 0.02);

  int64_t parameters = 0;
  replace_folder_atomically(options.out, options.overwrite, [&](const std::string& temp) {
    CausalLM model(config, at::TensorOptions().dtype(dtype));
    initialize_randomly(model, options.seed, std);
    save_hf_checkpoint(model, temp);
    if (!options.tokenizer.empty()) copy_companion_files(options.tokenizer, temp);
    for (const auto& p : model.parameters()) parameters += p.numel();
  });
  std::cout << "wrote " << options.out << ": " << config.model_type << ", " << parameters
            << " parameters, " << options.dtype << "\n";
}

}  // namespace

void add_init_model_command(CLI::App& app) {
  auto options = std::make_shared<InitModelOptions>();
  std::string presets;
  for (const auto& [name, description] : preset_descriptions()) {
    presets += "\n  " + name + ": " + description;
  }
  CLI::App* command = app.add_subcommand(
      "init-model", "Write a randomly initialised HF checkpoint (config.json, model.safetensors, "
                    "generation_config.json)");
  command->add_option("--arch", options->arch, "llama, qwen2 or qwen3")->capture_default_str();
  command->add_option("--preset", options->preset, "model size:" + presets)->capture_default_str();
  command->add_option("--out", options->out, "output folder")->required();
  command->add_option("--set", options->overrides,
                      "override a config.json field, e.g. --set hidden_size=384 (repeatable; values "
                      "are JSON, else strings)");
  command->add_option("--dtype", options->dtype, "stored dtype: bfloat16 or float32")
      ->capture_default_str();
  command->add_option("--seed", options->seed, "initialisation seed")->check(seed_validator())->capture_default_str();
  command->add_flag("--overwrite", options->overwrite, "replace an existing output folder");
  command->add_option("--tokenizer", options->tokenizer,
                      "copy this folder's tokenizer files into the model and set vocab_size, bos/eos ids to match")
      ->check(CLI::ExistingDirectory);
  command->callback([options] { run_init_model(*options); });
}

}  // namespace remora
