// Attaching adapters to a CausalLM by target-module name.
#include "adapters/adapted_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "core/json_input.h"
#include "adapters/routers/routers.h"
#include "core/error.h"

namespace remora {

std::string saved_tensor_name(const std::string& module_path, const std::string& suffix) {
  return "base_model.model." + module_path + "." + suffix;
}

AdaptedModel::AdaptedModel(std::shared_ptr<CausalLM> base, AdapterConfig config, uint64_t seed)
    : model_(std::move(base)), config_(std::move(config)) {
  const ModelConfig& mc = model_->config();
  config_.validate("adapter config");
  if (config_.method == AdapterMethod::kRetrieval && config_.retrieval_layer >= mc.num_layers) {
    fail("adapter config: retrieval_layer is ", config_.retrieval_layer, ", the model has ", mc.num_layers, " layers");
  }
  if (!config_.layer_num_experts.empty() &&
      static_cast<int64_t>(config_.layer_num_experts.size()) != mc.num_layers) {
    fail("adapter config: layer_num_experts has ", config_.layer_num_experts.size(),
         " entries, the model has ", mc.num_layers, " layers");
  }
  for (auto& p : model_->parameters()) p.set_requires_grad(false);
  try {
    attach(seed);
  } catch (...) {
    detach();
    throw;
  }
  set_training(false);
}

void AdaptedModel::attach(uint64_t seed) {
  const ModelConfig& mc = model_->config();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);

  for (const auto& [block_path, i, block] : model_->projection_blocks()) {
    std::shared_ptr<BlockRouting> block_routing;
    AdapterMethod block_method = AdapterMethod::kLora;
    int64_t block_experts = 0;
    bool adapted_here = false;
    for (const auto& name : block->projection_names()) {
      const std::string path = block_path + "." + name;
      const auto spec = config_.spec_for(path, i);
      if (!spec) continue;
      auto base_linear = std::dynamic_pointer_cast<Linear>(block->projection(name));
      REMORA_CHECK(base_linear, path, " is already adapted");
      std::shared_ptr<Router> own_router;
      if (routes_per_block(spec->method)) {
        if (block_routing && (block_method != spec->method || block_experts != spec->num_experts)) {
          fail(path, ": the projections of one block share its router, so they need the same "
               "block-routed method and expert count (", method_name(block_method), " with ",
               block_experts, " experts is already set up here)");
        }
        block_method = spec->method;
        block_experts = spec->num_experts;
        if (!block_routing) {
          auto router = make_router(*spec, config_, mc.hidden_size);
          router->initialize(config_.router_init_std, generator);
          router->to(base_linear->weight.device());
          block->register_module("router", router);
          registered_routers_.push_back(block);
          // Retrieval decides from the prompt alone, once per sequence.
          const RoutingGranularity granularity =
              spec->method == AdapterMethod::kRetrieval ? RoutingGranularity::kSequence : config_.routing;
          block_routing = std::make_shared<BlockRouting>(router, granularity, &state_, block_path + ".router");
          block_routers_.push_back(block_routing);
        }
      } else if (is_routed(spec->method)) {
        own_router = make_router(*spec, config_, base_linear->in_features());
        own_router->initialize(config_.router_init_std, generator);
        own_router->to(base_linear->weight.device());
      }
      auto adapted = std::make_shared<RoutedLoraLinear>(
          base_linear, *spec, adapter_scale(*spec), config_.lora_dropout, own_router,
          routes_per_block(spec->method) ? block_routing : nullptr, &state_, path, generator);
      block->replace_projection(name, adapted);
      slots_.emplace_back(block, name);
      adapted_.push_back(adapted);
      adapted_here = true;
    }
    if (adapted_here) {
      hooked_blocks_.push_back(block);
      // Every adapted block tells the routers which tokens are real; block routers decide here.
      block->input_hook = [state = &state_, routing = block_routing](const at::Tensor& x,
                                                                     const ForwardContext& context) {
        state->token_mask = context.token_mask;
        if (routing && !state->bypass_adapters) routing->on_block_input(x, context);
      };
    }
  }
  if (config_.method == AdapterMethod::kRetrieval) install_retrieval_prepass();
  // A composed adapter's experts can stay as their folders had them: only the routers learn.
  for (auto& t : adapter_parameters()) t.set_requires_grad(!config_.freeze_experts);
  for (const auto& [path, router] : routers()) {
    // A frozen ReMix router keeps its initial weights: random routing with constant weights.
    const bool frozen = config_.router_objective == RouterObjective::kFrozen &&
                        std::dynamic_pointer_cast<RemixRouter>(router);
    for (auto& p : router->parameters()) p.set_requires_grad(!frozen);
  }
  if (adapted_.empty()) {
    fail("adapter config: target_modules ", describe(config_.target_modules),
         " matches no projection of this ", mc.model_type, " model (e.g. model.layers.0.self_attn.q_proj)");
  }
}

AdaptedModel::~AdaptedModel() { detach(); }

void AdaptedModel::detach() {
  for (const auto& [block, name] : slots_) {
    if (auto routed = std::dynamic_pointer_cast<RoutedLoraLinear>(block->projection(name))) {
      block->replace_projection(name, routed->base);
    }
  }
  for (auto& block : registered_routers_) block->unregister_module("router");
  for (auto& block : hooked_blocks_) block->input_hook = nullptr;
  if (config_.method == AdapterMethod::kRetrieval) model_->before_forward = nullptr;
  slots_.clear();
  registered_routers_.clear();
  hooked_blocks_.clear();
}

std::vector<at::Tensor> AdaptedModel::adapter_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& a : adapted_) {
    for (const auto& [suffix, tensor] : a->named_factors()) out.push_back(tensor);
  }
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Router>>> AdaptedModel::routers() const {
  std::vector<std::pair<std::string, std::shared_ptr<Router>>> out;
  for (const auto& a : adapted_) {
    if (a->router) out.emplace_back(a->path() + ".router", a->router);
  }
  for (const auto& b : block_routers_) out.emplace_back(b->path(), b->router);
  return out;
}

std::vector<at::Tensor> AdaptedModel::router_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [path, router] : routers()) {
    for (auto& p : router->parameters()) out.push_back(p);
  }
  return out;
}

bool AdaptedModel::has_policy_routers() const {
  const auto all = routers();
  return std::any_of(all.begin(), all.end(),
                     [](const auto& item) { return std::dynamic_pointer_cast<RemixRouter>(item.second) != nullptr; });
}

std::vector<std::pair<std::string, at::Tensor>> AdaptedModel::named_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& a : adapted_) {
    for (const auto& [suffix, tensor] : a->named_factors()) out.emplace_back(saved_tensor_name(a->path(), suffix), tensor);
  }
  for (const auto& [path, router] : routers()) {
    for (const auto& item : router->named_parameters()) out.emplace_back(saved_tensor_name(path, item.key()), item.value());
    for (const auto& item : router->named_buffers()) out.emplace_back(saved_tensor_name(path, item.key()), item.value());
  }
  return out;
}

int64_t AdaptedModel::trainable_parameter_count() const {
  int64_t total = 0;
  for (const auto& t : adapter_parameters()) total += t.requires_grad() ? t.numel() : 0;
  for (const auto& t : router_parameters()) total += t.requires_grad() ? t.numel() : 0;
  return total;
}

int64_t AdaptedModel::activated_parameter_count() const {
  int64_t total = 0;
  for (const auto& a : adapted_) total += a->activated_parameters();
  for (const auto& t : router_parameters()) total += t.numel();
  return total;
}

void AdaptedModel::install_retrieval_prepass() {
  // The retrieval layer's attention block records the prompts' mean input while the pre-pass runs.
  const std::string embedding_block = "model.layers." + std::to_string(config_.retrieval_layer) + ".self_attn";
  for (const auto& [block_path, i, block] : model_->projection_blocks()) {
    if (block_path != embedding_block) continue;
    BlockInputHook routing_hook = block->input_hook;
    block->input_hook = [state = &state_, routing_hook](const at::Tensor& x, const ForwardContext& context) {
      if (state->bypass_adapters) {
        at::Tensor weights = context.routing_mask.to(at::kFloat).unsqueeze(-1);  // [B, T, 1]
        state->sequence_embedding = (x.to(at::kFloat) * weights).sum(1) / weights.sum(1).clamp_min(1);
      }
      if (routing_hook) routing_hook(x, context);
    };
    if (std::find(hooked_blocks_.begin(), hooked_blocks_.end(), block) == hooked_blocks_.end()) {
      hooked_blocks_.push_back(block);
    }
  }
  model_->before_forward = [this](const at::Tensor& ids, const at::Tensor& attention_mask,
                                  const at::Tensor& routing_mask, const KVCache* cache) {
    // Cached decoding keeps the prompt's decision; the pre-pass itself must not recurse.
    if (state_.bypass_adapters || (cache && cache->length > 0)) return;
    embed_prompts(ids, attention_mask, routing_mask);
  };
}

at::Tensor AdaptedModel::embed_prompts(const at::Tensor& ids, const at::Tensor& attention_mask,
                                       const at::Tensor& routing_mask) {
  REMORA_CHECK(config_.method == AdapterMethod::kRetrieval, "embed_prompts needs a retrieval adapter");
  at::NoGradGuard no_grad;
  // One forward of the base model alone (every adapter bypassed): the centroids were measured so.
  state_.bypass_adapters = true;
  try {
    model_->hidden_states(ids, attention_mask, nullptr, routing_mask);
  } catch (...) {
    state_.bypass_adapters = false;
    throw;
  }
  state_.bypass_adapters = false;
  return state_.sequence_embedding;
}

void AdaptedModel::set_training(bool training) {
  state_.training = training;
  model_->train(training);
}

}  // namespace remora
