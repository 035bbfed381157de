// Shared CLI option handling.
#include "cli/common.h"

#include <ATen/CPUGeneratorImpl.h>

#include <charconv>

#include "core/dtype.h"
#include "core/error.h"
#include "adapters/adapter_io.h"
#include "model/loader.h"

namespace remora {

void ModelOptions::add_to(CLI::App& command) {
  command.add_option("--model", dir, "Hugging Face model folder (config.json + safetensors)")
      ->required();
  command.add_option("--adapter", adapter,
                     "adapter folder (adapter_config.json + adapter_model.safetensors) to apply");
  command.add_option("--dtype", dtype, "weight dtype in memory: bfloat16 or float32")
      ->capture_default_str();
  command.add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
  command.add_option("--adapter-set", adapter_overrides,
                     "override an adapter_config.json field, e.g. sample_at_inference=true (repeatable)");
  command.add_option("--routing-seed", routing_seed, "seed of routers that sample at inference")
      ->check(seed_validator())
      ->capture_default_str();
}

LoadedModel ModelOptions::load() const {
  LoadedModel loaded;
  loaded.model = load_causal_lm(dir, parse_compute_dtype(dtype), parse_device(device));
  if (adapter.empty()) {
    REMORA_CHECK(adapter_overrides.empty(), "--adapter-set needs --adapter");
    return loaded;
  }
  nlohmann::json overrides = nlohmann::json::object();
  for (const auto& assignment : adapter_overrides) apply_json_assignment(overrides, assignment, "--adapter-set");
  loaded.adapter = load_adapter(loaded.model, adapter, overrides);
  loaded.adapter->routing().generator = at::make_generator<at::CPUGeneratorImpl>(routing_seed);
  return loaded;
}

CLI::Validator seed_validator() {
  return CLI::Validator(
      [](const std::string& text) -> std::string {
        uint64_t value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
          return "expected an integer in [0, 2^64), got '" + text + "'";
        }
        return "";
      },
      "SEED");
}

void apply_json_assignment(nlohmann::json& object, const std::string& assignment, const std::string& flag) {
  const size_t equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) fail(flag, ": expected key=value, got '", assignment, "'");
  const std::string text = assignment.substr(equals + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  object[assignment.substr(0, equals)] = value.is_discarded() ? nlohmann::json(text) : value;
}

std::vector<std::vector<int64_t>> parse_id_rows(const std::string& text, const std::string& flag,
                                                int64_t vocab_size) {
  std::vector<std::vector<int64_t>> rows(1);
  size_t start = 0;
  while (start <= text.size()) {
    size_t stop = text.find_first_of(",;", start);
    if (stop == std::string::npos) stop = text.size();
    std::string item = text.substr(start, stop - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    int64_t id = -1;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (item.empty() || error != std::errc() || end != item.data() + item.size() || id < 0) {
      fail(flag, ": '", item, "' in row ", rows.size() - 1, " is not a token id");
    }
    if (id >= vocab_size) {
      fail(flag, ": token id ", id, " in row ", rows.size() - 1, " is outside the vocabulary (size ",
           vocab_size, ")");
    }
    rows.back().push_back(id);
    if (stop < text.size() && text[stop] == ';') rows.emplace_back();
    start = stop + 1;
  }
  return rows;
}

}  // namespace remora
