// What an adapter is: method, rank, scaling, targets and router settings, as saved in adapter_config.json.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace remora {

// lora / rslora: one LoRA (n = 1). molora: dense softmax over n LoRAs. topk: MixLoRA-style softmax
// top-k, renormalised, plus a balance loss. hydra: one shared A and n B heads, dense softmax.
// remix: constant weight omega on k experts sampled by a policy-gradient-trained router.
// smora: every rank is an expert (one router score per block of rank_partition ranks); sigmoid
// top-k with a loss-free balancing bias. multilora: n parallel LoRAs summed, each with a learnable
// scale. malora: experts sharing one low-rank down-projection subspace, each with its own small part.
// Over existing LoRAs (remora compose; `experts` lists them): molora (MoLE's dense gate), topk and
// remix as above, loraflow (LoRA-Flow's per-token fusion gate) and retrieval (LoraRetriever: each
// sequence to the k experts whose data its prompt is most similar to, untrained).
enum class AdapterMethod {
  kLora, kRslora, kMolora, kTopk, kHydra, kRemix, kSmora, kMultilora, kMalora, kLoraflow, kRetrieval
};

enum class RoutingGranularity { kToken, kSequence };  // ReMix: a subset per token, or per sequence
enum class OmegaType { kLora, kRslora };               // ReMix: omega = alpha/(k r) or alpha/sqrt(k r)
// How ReMix's router learns: RLOO (the paper), REINFORCE without a baseline (the paper's "No RLOO"
// ablation), or not at all (random routing with the same constant weights: the control).
enum class RouterObjective { kRloo, kReinforce, kFrozen };
// Top-k balance loss: one Switch-style loss over every layer's tokens pooled (MixLoRA's and
// transformers' Mixtral convention), or one per layer, summed.
enum class BalanceLossScope { kPooled, kLayer };

const char* method_name(AdapterMethod method);
AdapterMethod parse_method(const std::string& name, const std::string& where);
bool is_routed(AdapterMethod method);
// lora or rslora: one LoRA per projection (what PEFT's LORA files, DoRA and compose's experts are).
bool is_single_lora(AdapterMethod method);
// Whether a token (or sequence) activates top_k of the experts rather than all of them.
bool picks_top_k(AdapterMethod method);
// Whether one router serves a whole block (attention or MLP) rather than each projection.
bool routes_per_block(AdapterMethod method);

// One existing LoRA of a composed adapter: its own rank, scaling and targets, as its folder had them.
struct ComposedExpert {
  std::string name;
  int64_t r = 8;
  double lora_alpha = 8;
  bool use_rslora = false;
  nlohmann::json target_modules;
  nlohmann::json exclude_modules = nullptr;
  // alpha / r, or alpha / sqrt(r) for rsLoRA: what its own folder scales B A x by.
  double scale() const;
};

// Settings for one adapted projection once patterns are resolved.
struct ModuleAdapterSpec {
  AdapterMethod method = AdapterMethod::kLora;
  int64_t rank = 8;          // r: rank of each expert (SMoRA: 1, every rank is an expert)
  double alpha = 8;          // lora_alpha
  int64_t num_experts = 1;   // n (SMoRA: the LoRA's rank)
  int64_t top_k = 1;         // k
  int64_t rank_partition = 1;  // SMoRA: ranks sharing one router score
  // Composed adapters: each expert's rank at this projection (0 where it does not adapt it) and its
  // own scale; factors are stacked in expert order, so experts' widths differ. Empty otherwise.
  std::vector<int64_t> expert_ranks;
  std::vector<double> expert_scales;
  bool composed() const { return !expert_ranks.empty(); }
  bool dora = false;  // LoRA / rsLoRA with DoRA's magnitude vector
};

// The whole adapter_config.json. Defaults follow the spec (shared/spec/methods.md) and PEFT.
// Caps on an adapter's sizes (README: "Limits"), far above what the papers use (n <= 64, r <= 256).
constexpr int64_t kMaxExperts = 1024;
constexpr int64_t kMaxRank = 8192;

struct AdapterConfig {
  AdapterMethod method = AdapterMethod::kLora;
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0.0;
  // target_modules: a list (exact name or ".name" suffix), a string (regex over the full module
  // path), or "all-linear" (every projection; the LM head is never adapted).
  nlohmann::json target_modules = nlohmann::json::array({"q_proj", "v_proj"});
  nlohmann::json exclude_modules = nullptr;
  // Per-module method overrides, PEFT rank_pattern-style: {"q_proj": "lora"} (suffix match).
  std::map<std::string, AdapterMethod> method_pattern;
  int64_t num_experts = 8;                     // n (routed methods)
  int64_t top_k = 2;                           // k (topk, remix, smora)
  std::vector<int64_t> layer_num_experts;      // MoLA-style per-layer n; empty = num_experts
  double router_init_std = 0.02;               // router weights ~ N(0, std)
  double balance_loss_coef = 0.001;            // topk: Switch-style balance loss coefficient
  BalanceLossScope balance_loss_scope = BalanceLossScope::kPooled;  // topk
  RoutingGranularity routing = RoutingGranularity::kToken;  // remix (ours)
  OmegaType omega_type = OmegaType::kRslora;   // remix: the better variant in the paper's ablation
  double omega_alpha = 2.0;                    // remix: omega = omega_alpha / (k r) or / sqrt(k r)
  bool sample_at_inference = false;            // remix: the paper's "No top-k" ablation
  RouterObjective router_objective = RouterObjective::kRloo;  // remix
  double smora_bias_rate = 1e-5;               // smora: u of the sign-based bias update
  int64_t rank_partition = 1;                  // smora: ranks sharing one router score
  // DoRA (lora / rslora): W' = m (W + s B A) / ||W + s B A||_row, the norm detached; PEFT's use_dora.
  bool use_dora = false;
  std::string base_model_name_or_path;
  // Composition (remora compose): the existing LoRAs that are the experts (n = their count), whether
  // their factors stay frozen in training (only the routers learn), and for retrieval the layer whose
  // input hidden state, averaged over the prompt, is compared with each expert's centroid.
  std::vector<ComposedExpert> experts;
  bool freeze_experts = false;
  int64_t retrieval_layer = 0;
  bool composed() const { return !experts.empty(); }

  // Parses adapter_config.json content. peft_type "LORA" (PEFT's own files: known PEFT keys are
  // accepted, unsupported values rejected) or "REMORA" (this project's; unknown keys rejected).
  // Throws Error naming `source` and the field.
  static AdapterConfig from_json(const nlohmann::json& json, const std::string& source);
  // PEFT's LORA layout for lora/rslora without overrides, REMORA otherwise.
  nlohmann::json to_json() const;
  // Checks ranges (r > 0, 1 <= k <= n, ...); throws Error naming the field.
  void validate(const std::string& source) const;
  // The part of validate() about `experts`, loraflow / retrieval and freeze_experts.
  void validate_composition(const std::string& source) const;

  // Throws Error naming `source` and the key if a key in `keys` (adapter_config.json names, as a
  // recipe or --set gave them explicitly) has no effect on any method this adapter uses.
  void check_keys_act(const std::vector<std::string>& keys, const std::string& source) const;
  // Whether `m` is the method or one of method_pattern's.
  bool uses(AdapterMethod m) const;

  // Which method and shapes apply to the projection at `module_path` (e.g.
  // "model.layers.3.mlp.up_proj") in layer `layer`; nullopt if it is not targeted.
  std::optional<ModuleAdapterSpec> spec_for(const std::string& module_path, int64_t layer) const;
  bool writes_peft_lora() const;
};

// Reads and validates <dir>/adapter_config.json with `overrides` (a JSON object, e.g.
// {"sample_at_inference": true}) replacing its fields first; an override that acts on none of the
// adapter's methods is an error.
AdapterConfig read_adapter_config(const std::string& dir, const nlohmann::json& overrides = nlohmann::json::object());

}  // namespace remora
