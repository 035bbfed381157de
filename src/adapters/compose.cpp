// Composition of existing LoRA folders into one routed adapter.
#include "adapters/compose.h"

#include <map>

#include "adapters/adapter_io.h"
#include "adapters/routers/routers.h"
#include "core/error.h"

namespace remora {

std::unique_ptr<AdaptedModel> compose_adapter(std::shared_ptr<CausalLM> base, const std::vector<ExpertFolder>& experts,
                                              AdapterConfig routing, uint64_t seed) {
  REMORA_CHECK(experts.size() >= 2, "compose: give at least two --expert NAME=DIR");
  routing.experts.clear();
  // Each expert is loaded alone first (every check load_adapter makes), and its factors kept by path.
  std::vector<std::map<std::string, std::pair<at::Tensor, at::Tensor>>> factors(experts.size());
  for (size_t i = 0; i < experts.size(); ++i) {
    const ExpertFolder& expert = experts[i];
    auto loaded = load_adapter(base, expert.dir);
    const AdapterConfig& c = loaded->config();
    if (!is_single_lora(c.method) || !c.method_pattern.empty() || c.use_dora) {
      fail(expert.dir, "/adapter_config.json: expert '", expert.name, "' is a ", c.use_dora ? "DoRA" : method_name(c.method),
           " adapter; compose takes plain LoRA or rsLoRA folders");
    }
    for (const auto& layer : loaded->adapted()) {
      factors[i][layer->path()] = {layer->lora_A.detach().clone(), layer->lora_B.detach().clone()};
    }
    routing.experts.push_back({expert.name, c.r, c.lora_alpha, c.method == AdapterMethod::kRslora, c.target_modules,
                               c.exclude_modules});
  }  // each expert's adapter detaches from the base here
  routing.num_experts = static_cast<int64_t>(experts.size());
  routing.target_modules = "all-linear";  // each expert's own targets decide where it adapts
  routing.exclude_modules = nullptr;
  auto composed = std::make_unique<AdaptedModel>(std::move(base), routing, seed);
  at::NoGradGuard no_grad;
  for (const auto& layer : composed->adapted()) {
    const auto& ranks = layer->spec().expert_ranks;
    int64_t offset = 0;
    for (size_t i = 0; i < experts.size(); ++i) {
      if (ranks[i] == 0) continue;
      const auto found = factors[i].find(layer->path());
      REMORA_CHECK(found != factors[i].end(), experts[i].dir, ": expert '", experts[i].name, "' has no factors for ",
                   layer->path());
      layer->lora_A.narrow(0, offset, ranks[i]).copy_(found->second.first);
      layer->lora_B.narrow(1, offset, ranks[i]).copy_(found->second.second);
      offset += ranks[i];
    }
  }
  return composed;
}

void set_retrieval_centroids(AdaptedModel& adapted, const at::Tensor& centroids) {
  at::NoGradGuard no_grad;
  for (const auto& [path, router] : adapted.routers()) {
    auto retrieval = std::dynamic_pointer_cast<RetrievalRouter>(router);
    REMORA_CHECK(retrieval, path, ": not a retrieval router");
    REMORA_CHECK(retrieval->centroids.sizes() == centroids.sizes(), path, ": centroids ", centroids.sizes(),
                 " do not fit the router's ", retrieval->centroids.sizes());
    retrieval->centroids.copy_(centroids);
  }
}

}  // namespace remora
