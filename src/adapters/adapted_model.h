// A base CausalLM with adapters attached by target-module name, and the routing state they share.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapters/adapter_config.h"
#include "adapters/block_routing.h"
#include "adapters/routed_lora_linear.h"
#include "adapters/routing.h"
#include "model/decoder.h"

namespace remora {

class AdaptedModel {
 public:
  // Replaces every projection `config` targets with a RoutedLoraLinear (fresh PEFT-style init:
  // B = 0, so the model still equals the base), adds block routers, and freezes the base. The
  // adapter lives on the base's device in fp32. Throws Error if nothing matches, or if
  // layer_num_experts does not have one entry per layer, leaving the base as it was. Initialisation
  // draws from a generator seeded with `seed` (the global generators are not touched).
  AdaptedModel(std::shared_ptr<CausalLM> base, AdapterConfig config, uint64_t seed = 0);
  // Puts the base model back as it was (plain Linears, no routers, no hooks): adapted layers never
  // outlive the routing state they point to.
  ~AdaptedModel();
  AdaptedModel(const AdaptedModel&) = delete;
  AdaptedModel& operator=(const AdaptedModel&) = delete;

  CausalLM& model() { return *model_; }
  std::shared_ptr<CausalLM> model_ptr() { return model_; }
  const AdapterConfig& config() const { return config_; }
  RoutingState& routing() { return state_; }

  const std::vector<std::shared_ptr<RoutedLoraLinear>>& adapted() const { return adapted_; }
  const std::vector<std::shared_ptr<BlockRouting>>& block_routers() const { return block_routers_; }

  // Adapter factors (A, B) and router weights: what an optimizer updates (a frozen ReMix router's
  // weights are listed but do not require gradients).
  std::vector<at::Tensor> adapter_parameters() const;
  std::vector<at::Tensor> router_parameters() const;
  // Every router by its path ("model.layers.3.mlp.router"), the name routing statistics use.
  std::vector<std::pair<std::string, std::shared_ptr<Router>>> routers() const;
  // Whether any router samples its experts and learns by policy gradient (ReMix): training then
  // runs M routed samples per input and the router objective.
  bool has_policy_routers() const;
  // Every tensor of the adapter by its saved name (factors, routers, SMoRA biases).
  std::vector<std::pair<std::string, at::Tensor>> named_tensors() const;

  int64_t trainable_parameter_count() const;
  // Adapter parameters one token activates plus every router's (the paper's budget unit).
  int64_t activated_parameter_count() const;

  // Puts the base model's own Linears back, unregisters the routers and removes the hooks; the
  // adapter's tensors stay readable. The destructor does this too.
  void detach();

  // Sampling/balancing behaviour (training) versus deterministic top-k (inference).
  void set_training(bool training);

  // Retrieval adapters: the embedding [B, d] fp32 their router compares with the experts' centroids,
  // the mean over routing_mask (default: the real tokens) of the base model's input to the attention
  // block of layer retrieval_layer. Every forward computes it first in a pre-pass of the base model.
  at::Tensor embed_prompts(const at::Tensor& ids, const at::Tensor& attention_mask,
                           const at::Tensor& routing_mask = {});

 private:
  std::shared_ptr<CausalLM> model_;
  AdapterConfig config_;
  RoutingState state_;
  std::vector<std::shared_ptr<RoutedLoraLinear>> adapted_;
  std::vector<std::shared_ptr<BlockRouting>> block_routers_;
  std::vector<std::shared_ptr<ProjectionBlock>> hooked_blocks_;
  // Where each adapted layer sits, to put the base Linear back.
  std::vector<std::pair<std::shared_ptr<ProjectionBlock>, std::string>> slots_;

  std::vector<std::shared_ptr<ProjectionBlock>> registered_routers_;

  void attach(uint64_t seed);
  void install_retrieval_prepass();
};

// The name a tensor has in adapter_model.safetensors: "base_model.model." + module path + suffix.
std::string saved_tensor_name(const std::string& module_path, const std::string& suffix);

}  // namespace remora
