// `remora init-adapter`: a freshly initialised adapter folder for a model, for tests, demos and benchmarks.
#include <ATen/CPUGeneratorImpl.h>

#include <iostream>
#include <sstream>

#include "core/file_util.h"
#include "adapters/adapter_io.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/loader.h"

namespace remora {
namespace {

struct InitAdapterOptions {
  std::string model;
  std::string out;
  std::string method = "lora";
  int64_t r = 8;
  double alpha = 16;
  std::string targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
  int64_t experts = 8;
  int64_t top_k = 2;
  std::vector<std::string> overrides;
  double init_b_std = 0.0;
  uint64_t seed = 0;
  bool overwrite = false;
};

// "all-linear" stays a string, a comma list becomes a list of names, "re:PATTERN" a regex.
nlohmann::json parse_targets(const std::string& text) {
  if (text == "all-linear") return text;
  if (text.rfind("re:", 0) == 0) return text.substr(3);
  nlohmann::json names = nlohmann::json::array();
  std::stringstream stream(text);
  for (std::string name; std::getline(stream, name, ',');) {
    if (!name.empty()) names.push_back(name);
  }
  return names;
}

void run_init_adapter(const InitAdapterOptions& options) {
  refuse_output_overlapping_inputs(options.out, "--out", {{options.model, "--model"}});
  nlohmann::json json = {{"r", options.r}, {"lora_alpha", options.alpha},
                         {"target_modules", parse_targets(options.targets)},
                         {"base_model_name_or_path", options.model}};
  if (options.method == "lora" || options.method == "rslora") {
    json["peft_type"] = "LORA";
    json["use_rslora"] = options.method == "rslora";
  } else {
    json["peft_type"] = "REMORA";
    json["method"] = options.method;
    json["num_experts"] = options.experts;
    json["top_k"] = options.top_k;
  }
  std::vector<std::string> set_keys;
  for (const auto& assignment : options.overrides) {
    apply_json_assignment(json, assignment, "--set");
    set_keys.push_back(assignment.substr(0, assignment.find('=')));
  }
  const AdapterConfig config = AdapterConfig::from_json(json, "init-adapter options");
  config.check_keys_act(set_keys, "init-adapter --set");
  AdaptedModel adapted(load_causal_lm(options.model, at::kBFloat16), config, options.seed);
  if (options.init_b_std > 0) {
    // A non-zero B makes the adapter change the model at once (PEFT starts from B = 0).
    at::NoGradGuard no_grad;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed + 1);
    for (const auto& a : adapted.adapted()) {
      a->lora_B.copy_(at::empty(a->lora_B.sizes()).normal_(0, options.init_b_std, generator));
      if (a->lora_scaling.defined()) a->lora_scaling.fill_(1.0);  // MultiLoRA's update is zero through its scales
    }
  }
  save_adapter(adapted, options.out, options.overwrite);
  std::cout << "wrote " << options.out << ": " << method_name(config.method) << " on "
            << adapted.adapted().size() << " projections, " << adapted.trainable_parameter_count()
            << " trainable parameters, " << adapted.activated_parameter_count()
            << " activated per token\n";
}

}  // namespace

void add_init_adapter_command(CLI::App& app) {
  auto options = std::make_shared<InitAdapterOptions>();
  CLI::App* command = app.add_subcommand(
      "init-adapter", "Write a freshly initialised adapter folder for a model (B = 0 unless --init-b-std)");
  command->add_option("--model", options->model, "base model folder")->required();
  command->add_option("--out", options->out, "output adapter folder")->required();
  command->add_option("--method", options->method, "lora, rslora, molora, topk, hydra, remix, smora, multilora or malora")
      ->capture_default_str();
  command->add_option("--r", options->r, "rank of each expert (SMoRA: of the whole LoRA)")->capture_default_str();
  command->add_option("--alpha", options->alpha, "lora_alpha")->capture_default_str();
  command->add_option("--target", options->targets,
                      "comma-separated module names, all-linear, or re:REGEX over module paths")
      ->capture_default_str();
  command->add_option("--experts", options->experts, "experts per router (routed methods)")->capture_default_str();
  command->add_option("--top-k", options->top_k, "active experts per token (topk, remix, smora)")
      ->capture_default_str();
  command->add_option("--set", options->overrides,
                      "any adapter_config.json field, e.g. --set routing=sequence (repeatable)");
  command->add_option("--init-b-std", options->init_b_std, "draw B ~ N(0, std) instead of zeros")
      ->capture_default_str();
  command->add_option("--seed", options->seed, "initialisation seed")->check(seed_validator())->capture_default_str();
  command->add_flag("--overwrite", options->overwrite, "replace an existing output folder");
  command->callback([options] { run_init_adapter(*options); });
}

}  // namespace remora
