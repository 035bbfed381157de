// `remora inspect`: what a model folder holds (architecture, shapes, parameter count, dtype, tensors).
#include <ATen/ATen.h>

#include <iomanip>
#include <iostream>
#include <map>

#include "adapters/adapter_io.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "model/decoder.h"
#include "model/loader.h"

namespace remora {
namespace {

struct InspectOptions {
  std::string dir;
  std::string adapter;
  bool tensors = true;
};

// Attaches the adapter to the (bf16) base and reports its budget: trainable parameters, and the
// parameters one token activates, the unit the ReMix paper compares methods in.
void describe_adapter(const std::string& model_dir, const std::string& adapter_dir) {
  auto adapted = load_adapter(load_causal_lm(model_dir, at::kBFloat16), adapter_dir);
  const AdapterConfig& c = adapted->config();
  std::map<std::string, int64_t> per_method;
  for (const auto& a : adapted->adapted()) per_method[method_name(a->spec().method)] += 1;
  std::cout << "adapter       " << adapter_dir << "\n"
            << "method        " << method_name(c.method);
  if (!c.composed()) std::cout << ", r " << c.r << ", alpha " << c.lora_alpha << (c.use_dora ? ", DoRA" : "");
  if (!is_single_lora(c.method)) {
    std::cout << ", experts " << c.num_experts << ", top_k " << c.top_k;
  }
  std::cout << "\n";
  for (const ComposedExpert& e : c.experts) {
    std::cout << "expert        " << e.name << ": r " << e.r << ", alpha " << e.lora_alpha
              << (e.use_rslora ? " (rsLoRA)" : "") << ", targets " << e.target_modules.dump()
              << (c.freeze_experts ? ", frozen" : "") << "\n";
  }
  std::cout
            << "adapted       ";
  for (const auto& [method, count] : per_method) std::cout << count << " " << method << "  ";
  std::cout << "(" << adapted->block_routers().size() << " block routers)\n"
            << "trainable     " << adapted->trainable_parameter_count() << "\n"
            << "activated     " << adapted->activated_parameter_count() << " per token\n";
}

std::string rope_description(const ModelConfig& c) {
  std::ostringstream out;
  out << "theta " << c.rope_theta;
  if (c.rope_scaling.type == RopeScalingType::kLinear) out << ", linear x" << c.rope_scaling.factor;
  if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    out << ", llama3 x" << c.rope_scaling.factor << " (original "
        << c.rope_scaling.original_max_position_embeddings << ")";
  }
  return out.str();
}

void run_inspect(const InspectOptions& options) {
  if (!options.adapter.empty()) {
    describe_adapter(options.dir, options.adapter);
    return;
  }
  const ModelConfig config = ModelConfig::load(options.dir);
  const CheckpointTensors checkpoint(options.dir);

  // The same check as loading, without reading any tensor data.
  check_checkpoint_against_config(config, checkpoint, options.dir);

  int64_t parameters = 0;
  std::map<std::string, int64_t> dtype_counts;
  for (const auto& name : checkpoint.names()) {
    const auto* entry = checkpoint.find(name).entry;
    int64_t numel = 1;
    for (int64_t d : entry->shape) numel *= d;
    parameters += numel;
    dtype_counts[entry->dtype_name] += numel;
  }
  std::ostream& out = std::cout;
  out << "model         " << options.dir << "\n"
      << "architecture  " << config.model_type << " ("
      << config.raw.value("architectures", nlohmann::json::array()).dump() << ")\n"
      << "parameters    " << parameters << " (" << std::fixed << std::setprecision(1)
      << parameters / 1e6 << "M)\n"
      << "dtype         ";
  for (const auto& [dtype, count] : dtype_counts) out << dtype << " x " << count << "  ";
  out << "\n"
      << "layers        " << config.num_layers << "\n"
      << "hidden        " << config.hidden_size << ", intermediate " << config.intermediate_size
      << "\n"
      << "heads         " << config.num_heads << " query, " << config.num_kv_heads
      << " key/value, head_dim " << config.head_dim << "\n"
      << "vocab         " << config.vocab_size << (config.tie_word_embeddings ? ", tied LM head" : "")
      << "\n"
      << "rope          " << rope_description(config) << "\n"
      << "files         " << checkpoint.files().size() << " safetensors\n";
  if (!options.tensors) return;
  out << "tensors:\n";
  for (const auto& name : checkpoint.names()) {
    const auto* entry = checkpoint.find(name).entry;
    out << "  " << std::left << std::setw(56) << name << " " << std::setw(5) << entry->dtype_name
        << " " << c10::IntArrayRef(entry->shape) << "\n";
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* command =
      app.add_subcommand("inspect", "Show a model folder's architecture, parameter count and tensors");
  command->add_option("dir", options->dir, "Hugging Face model folder")->required();
  command->add_option("--adapter", options->adapter,
                      "describe this adapter on the model instead: trainable and activated parameters");
  command->add_flag("--tensors,!--no-tensors", options->tensors, "list every tensor (default on)");
  command->callback([options] { run_inspect(*options); });
}

}  // namespace remora
