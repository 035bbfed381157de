// Building a routed adapter whose experts are existing LoRA folders (remora compose).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapters/adapted_model.h"

namespace remora {

struct ExpertFolder {
  std::string name;
  std::string dir;  // a PEFT or remora LoRA / rsLoRA adapter folder for the same base model
};

// How the composed adapter routes: method (molora, topk, remix, loraflow or retrieval), top_k,
// freeze_experts, retrieval_layer and the routers' settings; `experts` is filled in here.
// Reads every expert folder (each must be a plain LoRA or rsLoRA of `base`; its shapes are checked
// as load_adapter does), then attaches the composed adapter to `base` with each expert's factors
// copied untouched into its rows of the stacked factors. Throws Error naming the folder at fault.
std::unique_ptr<AdaptedModel> compose_adapter(std::shared_ptr<CausalLM> base, const std::vector<ExpertFolder>& experts,
                                              AdapterConfig routing, uint64_t seed = 0);

// Retrieval: gives every router the experts' centroids [n, d] (one row per expert, in order).
void set_retrieval_centroids(AdaptedModel& adapted, const at::Tensor& centroids);

}  // namespace remora
