// Weight loading, random initialisation and HF-layout saving of a CausalLM.
#include "model/loader.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "core/file_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/weight_pages.h"

namespace remora {
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Tensors some checkpoints carry that the model recomputes or shares.
bool ignorable_extra(const std::string& name, const ModelConfig& config) {
  return ends_with(name, ".rotary_emb.inv_freq") ||
         (config.tie_word_embeddings && name == "lm_head.weight");
}

}  // namespace

void check_checkpoint_against_config(const ModelConfig& config, const CheckpointTensors& checkpoint,
                                     const std::string& model_dir) {
  // A model on the meta device has every parameter's name and shape and no storage at all.
  CausalLM expected(config, at::TensorOptions().dtype(at::kFloat).device(at::kMeta));
  std::set<std::string> known;
  for (const auto& item : expected.named_parameters()) {
    known.insert(item.key());
    const auto located = checkpoint.find(item.key());
    if (!located.entry) {
      fail(model_dir, ": checkpoint has no tensor '", item.key(), "' (shape ", item.value().sizes(), ") that a ",
           config.model_type, " model with this config.json needs");
    }
    if (item.value().sizes() != c10::IntArrayRef(located.entry->shape)) {
      fail(located.file->path(), ": tensor '", item.key(), "' has shape ", c10::IntArrayRef(located.entry->shape),
           ", config.json implies ", item.value().sizes());
    }
  }
  for (const auto& name : checkpoint.names()) {
    if (!known.count(name) && !ignorable_extra(name, config)) {
      fail(model_dir, ": checkpoint tensor '", name, "' is not part of a ", config.model_type,
           " model with this config.json");
    }
  }
}

std::shared_ptr<CausalLM> load_causal_lm(const std::string& model_dir, c10::ScalarType dtype,
                                         c10::Device device) {
  ModelConfig config = ModelConfig::load(model_dir);
  if (dtype == at::kHalf && device.is_cpu()) {
    fail("dtype float16: LibTorch has no float16 matrix products on the CPU; use bfloat16 or float32 "
         "(float16 checkpoints load into either)");
  }
  CheckpointTensors checkpoint(model_dir);
  check_checkpoint_against_config(config, checkpoint, model_dir);  // before any allocation
  auto model = std::make_shared<CausalLM>(config, at::TensorOptions().dtype(dtype).device(device));
  place_in_huge_pages(model->parameters());  // before the copies below touch the pages
  for (auto& item : model->named_parameters()) {
    const auto located = checkpoint.find(item.key());
    located.file->copy_into(*located.entry, item.value());
  }
  return model;
}

void initialize_randomly(CausalLM& model, uint64_t seed, double std) {
  at::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : model.named_parameters()) {
    at::Tensor values = at::empty(item.value().sizes(), at::kFloat);
    values.normal_(0.0, std, generator);
    if (ends_with(item.key(), "norm.weight")) values.add_(1.0);
    item.value().copy_(values);
  }
}

void copy_companion_files(const std::string& from_dir, const std::string& to_dir) {
  namespace fs = std::filesystem;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "chat_template.jinja", "generation_config.json"}) {
    const fs::path source = fs::path(from_dir) / name;
    if (path_exists(source)) fs::copy_file(source, fs::path(to_dir) / name, fs::copy_options::overwrite_existing);
  }
}

void save_hf_checkpoint(CausalLM& model, const std::string& dir) {
  namespace fs = std::filesystem;
  const ModelConfig& config = model.config();
  nlohmann::json json = config.raw;
  json["torch_dtype"] = torch_dtype_name(model.options().dtype().toScalarType());
  write_text_file_atomically((fs::path(dir) / "config.json").string(), json.dump(2) + "\n");

  nlohmann::json generation = {{"_from_model_config", true}};
  if (config.bos_token_id) generation["bos_token_id"] = *config.bos_token_id;
  if (config.eos_token_ids.size() == 1) generation["eos_token_id"] = config.eos_token_ids[0];
  if (config.eos_token_ids.size() > 1) generation["eos_token_id"] = config.eos_token_ids;
  if (config.pad_token_id) generation["pad_token_id"] = *config.pad_token_id;
  write_text_file_atomically((fs::path(dir) / "generation_config.json").string(),
                             generation.dump(2) + "\n");

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (auto& item : model.named_parameters()) tensors.emplace_back(item.key(), item.value());
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors);
}

}  // namespace remora
