// Adapter folders: adapter_config.json + adapter_model.safetensors, PEFT's layout for LoRA.
#pragma once

#include <memory>
#include <string>

#include "adapters/adapted_model.h"

namespace remora {

// Writes `dir` (created, or replaced when `overwrite`) atomically: everything goes to a temporary
// sibling folder that is renamed into place. Tensors are saved in fp32.
void save_adapter(const AdaptedModel& adapted, const std::string& dir, bool overwrite = false);

// Attaches the adapter in `dir` to `base`. Every tensor the config implies must be present with
// its exact shape and nothing else may be: errors name the file, the tensor and the expected shape.
// `config_overrides` (a JSON object) replaces adapter_config.json fields first, e.g.
// {"sample_at_inference": true}; a field that acts on none of the adapter's methods is an error.
std::unique_ptr<AdaptedModel> load_adapter(std::shared_ptr<CausalLM> base, const std::string& dir,
                                           const nlohmann::json& config_overrides = nlohmann::json::object());

// Folds every LoRA / rsLoRA update into its base weight (W + scale B A computed in fp32, then cast
// to the stored dtype) and puts the plain Linear back. Throws Error, changing nothing, if any adapted
// projection is routed: its update depends on the token.
void merge_into_base(AdaptedModel& adapted);

}  // namespace remora
