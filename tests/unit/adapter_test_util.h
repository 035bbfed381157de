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
  if (method == AdapterMethod::kLoraflow || method == AdapterMethod::kRetrieval) {
    // Two existing LoRAs of different ranks, scalings and targets (the second adapts no gate/up_proj).
    ComposedExpert wide{"wide", 4, 8, false, "all-linear", nullptr};
    ComposedExpert narrow{"narrow", 2, 4, true, nlohmann::json::array({"q_proj", "v_proj", "down_proj"}), nullptr};
    c.experts = {wide, narrow};
    c.num_experts = 2;
    c.top_k = 2;  // both, so that every factor gets a gradient (one-hot routing is tested on its own)
    c.retrieval_layer = 1;
  }
  return c;
}

// Every adapter variant the conformance battery runs: each method, and DoRA on LoRA.
inline const std::vector<std::pair<std::string, AdapterConfig>>& all_variants() {
  static const std::vector<std::pair<std::string, AdapterConfig>> variants = [] {
    std::vector<std::pair<std::string, AdapterConfig>> list;
    for (AdapterMethod m : {AdapterMethod::kLora, AdapterMethod::kRslora, AdapterMethod::kMolora, AdapterMethod::kTopk,
                            AdapterMethod::kHydra, AdapterMethod::kRemix, AdapterMethod::kSmora, AdapterMethod::kMultilora,
                            AdapterMethod::kMalora, AdapterMethod::kLoraflow, AdapterMethod::kRetrieval}) {
      list.emplace_back(method_name(m), adapter_config(m));
    }
    AdapterConfig dora = adapter_config(AdapterMethod::kRslora);
    dora.use_dora = true;
    list.emplace_back("dora", dora);
    return list;
  }();
  return variants;
}

// Gives every lora_B non-zero values so the adapter changes the model.
inline void randomize_b(AdaptedModel& adapted, uint64_t seed, double std = 0.2) {
  at::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& a : adapted.adapted()) {
    a->lora_B.copy_(at::empty(a->lora_B.sizes()).normal_(0, std, generator));
    // MultiLoRA's update starts at zero through its scales, not B.
    if (a->lora_scaling.defined()) a->lora_scaling.copy_(at::empty(a->lora_scaling.sizes()).normal_(1, std, generator));
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


}  // namespace remora::testing
