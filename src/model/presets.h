// Shapes for randomly initialised demo and test checkpoints (`remora init-model`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace remora {

// A complete HF config.json for `arch` (llama | qwen2 | qwen3) at `preset` size; throws Error
// naming the unknown value. Qwen presets tie embeddings and Qwen3 uses an explicit head_dim of twice
// hidden/heads, as the real families do.
nlohmann::json preset_config(const std::string& arch, const std::string& preset);

// Preset names with a one-line description each, smallest first.
std::vector<std::pair<std::string, std::string>> preset_descriptions();

}  // namespace remora
