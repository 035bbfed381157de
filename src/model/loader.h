// Building a CausalLM from a Hugging Face folder, random initialisation, and saving in HF layout.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <string>

#include "model/decoder.h"

namespace remora {

// Reads config.json and the safetensors weights of `model_dir` into a model whose parameters have
// `dtype` on `device` (the checkpoint's dtype is converted while copying, one tensor at a time).
// Throws Error naming the tensor if one is missing, has the wrong shape, or is not used by the
// architecture the config describes.
std::shared_ptr<CausalLM> load_causal_lm(const std::string& model_dir, c10::ScalarType dtype,
                                         c10::Device device = c10::kCPU);

class CheckpointTensors;
// Throws Error naming the tensor unless the checkpoint holds exactly the tensors (names and shapes)
// that `config` implies, extras the model recomputes aside. Allocates nothing (a meta-device model),
// so a config that implies absurd sizes is refused before any memory is asked for.
void check_checkpoint_against_config(const ModelConfig& config, const CheckpointTensors& checkpoint,
                                     const std::string& model_dir);

// Fills every parameter from a seeded generator: matrices and biases ~ N(0, std), norm weights
// ~ 1 + N(0, std). (transformers zeroes biases and sets norms to one; perturbing them makes a random
// checkpoint exercise every parameter in tests.)
void initialize_randomly(CausalLM& model, uint64_t seed, double std);

// Copies the files that describe a model beyond its weights (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, chat_template.jinja, generation_config.json) from `from_dir` to `to_dir`,
// those that exist, replacing what `to_dir` has.
void copy_companion_files(const std::string& from_dir, const std::string& to_dir);

// Writes config.json (`config.raw` with torch_dtype set), generation_config.json and
// model.safetensors into `dir`, which must exist.
void save_hf_checkpoint(CausalLM& model, const std::string& dir);

}  // namespace remora
