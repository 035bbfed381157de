// Saving, loading and merging adapters.
#include "adapters/adapter_io.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"
#include "io/safetensors.h"

namespace remora {
namespace fs = std::filesystem;

void save_adapter(const AdaptedModel& adapted, const std::string& dir, bool overwrite) {
  replace_folder_atomically(dir, overwrite, [&](const std::string& temp) {
    write_text_file_atomically((fs::path(temp) / "adapter_config.json").string(),
                               adapted.config().to_json().dump(2) + "\n");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, tensor] : adapted.named_tensors()) {
      tensors.emplace_back(name, tensor.detach().to(at::kFloat));
    }
    write_safetensors((fs::path(temp) / "adapter_model.safetensors").string(), tensors);
  });
}

std::unique_ptr<AdaptedModel> load_adapter(std::shared_ptr<CausalLM> base, const std::string& dir,
                                           const nlohmann::json& config_overrides) {
  AdapterConfig config = read_adapter_config(dir, config_overrides);
  const std::string weights = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!path_exists(weights)) fail(weights, ": missing");
  SafetensorsFile file(weights);
  auto adapted = std::make_unique<AdaptedModel>(std::move(base), config);
  std::set<std::string> expected;
  for (auto& [name, tensor] : adapted->named_tensors()) {
    expected.insert(name);
    const SafetensorsEntry* entry = file.find(name);
    if (!entry) {
      fail(weights, ": no tensor '", name, "' (shape ", tensor.sizes(),
           "), which adapter_config.json implies for this base model");
    }
    at::Tensor destination = tensor;  // shares storage with the parameter
    file.copy_into(*entry, destination);
    // A NaN would silently turn every output into garbage (generate printing token 0, merge writing a
    // NaN model).
    if (destination.is_floating_point() && !at::isfinite(destination).all().item<bool>()) {
      fail(weights, ": tensor '", name, "' holds NaN or infinite values");
    }
  }
  for (const auto& entry : file.entries()) {
    if (!expected.count(entry.name)) {
      fail(weights, ": tensor '", entry.name, "' does not belong to any adapted module of this base "
           "model with this adapter_config.json");
    }
  }
  return adapted;
}

void merge_into_base(AdaptedModel& adapted) {
  for (const auto& a : adapted.adapted()) {
    if (is_routed(a->spec().method)) {
      fail(a->path(), " uses ", method_name(a->spec().method),
           ": a routed adapter's update depends on each token's routing, so it cannot be folded into "
           "one weight matrix; run it unmerged with --adapter");
    }
  }
  at::NoGradGuard no_grad;
  for (const auto& a : adapted.adapted()) {
    // fp32 first, one rounding to the stored dtype at the end (bf16 accumulation drifts).
    at::Tensor merged = a->base->weight.to(at::kFloat) + a->delta_weight();
    a->base->weight.copy_(merged);
  }
  adapted.detach();  // the plain Linears, now holding the merged weights, go back in place
}

}  // namespace remora
