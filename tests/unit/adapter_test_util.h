// Adapter configs and helpers shared by the adapter and training tests.
#pragma once

#include "adapters/adapted_model.h"
#include "test_models.h"
#include "train/data.h"

namespace remora::testing {

// A small config for `method` targeting every projection (r 4, alpha 8, 4 experts, top 2).
inline AdapterConfig adapter_config(AdapterMethod method) {
  AdapterConfig c;
  c.method = method;
  c.r = 4;
  c.lora_alpha = 8;
  c.target_modules = "all-linear";
  c.num_experts = 4;
  c.top_k = 2;
  c.router_init_std = 0.5;  // routers that clearly prefer some experts
  c.smora_bias_rate = 1e-3;
  return c;
}

// Gives every lora_B non-zero values so the adapter changes the model.
inline void randomize_b(AdaptedModel& adapted, uint64_t seed, double std = 0.2) {
  at::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& a : adapted.adapted()) {
    a->lora_B.copy_(at::empty(a->lora_B.sizes()).normal_(0, std, generator));
  }
}

// Examples of `lengths` random tokens whose first `prompt` tokens are the prompt.
inline std::vector<TrainingExample> examples_of(const std::vector<int64_t>& lengths, int64_t prompt, uint64_t seed) {
  std::vector<TrainingExample> out;
  for (size_t i = 0; i < lengths.size(); ++i) {
    at::Tensor ids = random_ids(1, lengths[i], 512, seed + i)[0].contiguous();
    TrainingExample e;
    e.ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + lengths[i]);
    e.target.assign(lengths[i], 0);
    std::fill(e.target.begin() + prompt, e.target.end(), 1);
    e.prompt_length = prompt;
    out.push_back(std::move(e));
  }
  return out;
}

inline const std::vector<AdapterMethod>& all_methods() {
  static const std::vector<AdapterMethod> methods = {
      AdapterMethod::kLora,  AdapterMethod::kRslora, AdapterMethod::kMolora, AdapterMethod::kTopk,
      AdapterMethod::kHydra, AdapterMethod::kRemix,  AdapterMethod::kSmora};
  return methods;
}

}  // namespace remora::testing
