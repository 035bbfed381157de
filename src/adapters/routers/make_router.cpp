// Which router each method uses.
#include "adapters/routers/routers.h"
#include "core/error.h"

namespace remora {

std::shared_ptr<Router> make_router(const ModuleAdapterSpec& spec, const AdapterConfig& config,
                                    int64_t input_size) {
  const double std = config.router_init_std;
  switch (spec.method) {
    case AdapterMethod::kMolora:
    case AdapterMethod::kHydra:
      return std::make_shared<DenseSoftmaxRouter>(input_size, spec.num_experts, std);
    case AdapterMethod::kTopk:
    case AdapterMethod::kMalora:
      return std::make_shared<TopkRouter>(input_size, spec.num_experts, spec.top_k,
                                          config.balance_loss_coef, std, config.balance_loss_scope);
    case AdapterMethod::kRemix:
      return std::make_shared<RemixRouter>(input_size, spec.num_experts, spec.top_k,
                                           remix_omega(config, spec.rank),
                                           config.sample_at_inference, std);
    case AdapterMethod::kSmora:
      return std::make_shared<SmoraRouter>(input_size, spec.num_experts, spec.top_k,
                                           config.smora_bias_rate, spec.rank_partition);
    case AdapterMethod::kLoraflow:
      return std::make_shared<LoraFlowRouter>(input_size, spec.num_experts);
    case AdapterMethod::kRetrieval:
      return std::make_shared<RetrievalRouter>(input_size, spec.num_experts, spec.top_k);
    case AdapterMethod::kLora:
    case AdapterMethod::kRslora:
    case AdapterMethod::kMultilora:
      break;
  }
  fail("method ", method_name(spec.method), " has no router");
}

}  // namespace remora
