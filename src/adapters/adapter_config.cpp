// adapter_config.json parsing and writing, and PEFT's target-module matching rules.
#include "adapters/adapter_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/file_util.h"
#include "core/json_input.h"
#include "core/error.h"
#include "tokenizer/regex.h"

namespace remora {
namespace {

struct MethodName {
  const char* name;
  AdapterMethod method;
};
constexpr MethodName kMethods[] = {
    {"lora", AdapterMethod::kLora},   {"rslora", AdapterMethod::kRslora}, {"molora", AdapterMethod::kMolora},
    {"topk", AdapterMethod::kTopk},   {"hydra", AdapterMethod::kHydra},   {"remix", AdapterMethod::kRemix},
    {"smora", AdapterMethod::kSmora}, {"multilora", AdapterMethod::kMultilora}, {"malora", AdapterMethod::kMalora},
    {"loraflow", AdapterMethod::kLoraflow}, {"retrieval", AdapterMethod::kRetrieval},
};

// The methods a composed adapter (one made of existing LoRAs) can route with.
bool composes(AdapterMethod m) {
  return m == AdapterMethod::kMolora || m == AdapterMethod::kTopk || m == AdapterMethod::kRemix ||
         m == AdapterMethod::kLoraflow || m == AdapterMethod::kRetrieval;
}

// A composed expert's entry in "experts": its name and what its own adapter_config.json said.
ComposedExpert parse_expert(const nlohmann::json& json, const std::string& where);

// PEFT LoraConfig keys a reader meets in real files; values that change the math and that remora
// does not implement are rejected in from_json, the rest carry no meaning for the weights.
const std::set<std::string> kPeftLoraKeys = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "r", "lora_alpha",
    "lora_dropout", "target_modules", "exclude_modules", "bias", "lora_bias", "fan_in_fan_out",
    "modules_to_save", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
    "init_lora_weights", "use_dora", "use_rslora", "inference_mode", "megatron_config",
    "megatron_core", "loftq_config", "layer_replication", "auto_mapping", "eva_config",
    "corda_config", "use_qalora", "qalora_group_size", "runtime_config", "trainable_token_indices",
    "target_parameters", "alora_invocation_tokens", "arrow_config", "ensure_weight_tying",
    "peft_version"};

bool matches_name_list(const std::string& path, const nlohmann::json& names) {
  for (const auto& name : names) {
    const std::string n = name.get<std::string>();
    if (path == n || (path.size() > n.size() && path.compare(path.size() - n.size() - 1, n.size() + 1, "." + n) == 0)) {
      return true;
    }
  }
  return false;
}

// PEFT's check_target_module_exists: a list matches exact names or ".name" suffixes, a string is a
// regex that must match the whole path. "all-linear" is handled by the caller.
bool matches_targets(const std::string& path, const nlohmann::json& targets) {
  if (targets.is_null()) return false;
  // PCRE2 (as the tokenizer's patterns): std::regex recurses per character and overflows on huge
  // repeat counts, both reachable from a hostile adapter_config.json.
  if (targets.is_string()) return Regex(targets.get<std::string>(), "target_modules").full_match(path);
  return matches_name_list(path, targets);
}

void check_targets(const nlohmann::json& targets, const std::string& field, const std::string& source,
                   bool nullable) {
  if (nullable && targets.is_null()) return;
  if (targets.is_string()) {
    Regex(targets.get<std::string>(), source + ": " + field);  // throws naming the field if it does not compile
    return;
  }
  if (!targets.is_array() || targets.empty()) {
    fail(source, ": ", field, " must be a non-empty list of module names, a regex string or \"all-linear\"");
  }
  for (const auto& t : targets) {
    if (!t.is_string()) fail(source, ": ", field, " entries must be strings, got ", describe(t));
  }
}

template <typename T>
T get_field(const nlohmann::json& json, const char* key, const T& fallback, const std::string& source) {
  if (!json.contains(key) || json[key].is_null()) return fallback;
  const nlohmann::json& value = json[key];
  // nlohmann converts between kinds silently (4.5 -> 4, 1 -> true); a typed file must not.
  const auto is_integer = [](const nlohmann::json& v) { return v.is_number_integer(); };
  bool ok = false;
  const char* expected = "";
  if constexpr (std::is_same_v<T, bool>) {
    ok = value.is_boolean(), expected = "true or false";
  } else if constexpr (std::is_integral_v<T>) {
    ok = is_integer(value), expected = "an integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = value.is_number(), expected = "a number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    ok = value.is_string(), expected = "a string";
  } else {
    ok = value.is_array() && std::all_of(value.begin(), value.end(), is_integer), expected = "a list of integers";
  }
  if (!ok) fail(source, ": field '", key, "' must be ", expected, ", got ", describe(value));
  return value.get<T>();
}


// The string values a mode field takes, first = default.
template <typename E>
using Choices = std::vector<std::pair<const char*, E>>;

const Choices<RoutingGranularity> kRoutingChoices = {{"token", RoutingGranularity::kToken},
                                                     {"sequence", RoutingGranularity::kSequence}};
const Choices<OmegaType> kOmegaChoices = {{"rslora", OmegaType::kRslora}, {"lora", OmegaType::kLora}};
const Choices<RouterObjective> kObjectiveChoices = {{"rloo", RouterObjective::kRloo},
                                                    {"reinforce", RouterObjective::kReinforce},
                                                    {"frozen", RouterObjective::kFrozen}};
const Choices<BalanceLossScope> kScopeChoices = {{"pooled", BalanceLossScope::kPooled},
                                                 {"layer", BalanceLossScope::kLayer}};

template <typename E>
E choice_field(const nlohmann::json& json, const char* key, const Choices<E>& choices, const std::string& source) {
  const std::string value = get_field<std::string>(json, key, choices.front().first, source);
  std::string expected;
  for (const auto& [name, choice] : choices) {
    if (value == name) return choice;
    expected += (expected.empty() ? "\"" : ", \"") + std::string(name) + "\"";
  }
  fail(source, ": ", key, " must be one of ", expected, ", got \"", value, "\"");
}

template <typename E>
const char* choice_name(const Choices<E>& choices, E value) {
  for (const auto& [name, choice] : choices) {
    if (choice == value) return name;
  }
  return "?";
}

// Which methods each adapter_config.json key acts on (keys not listed act on every method).
struct KeyUse {
  const char* key;
  std::vector<AdapterMethod> methods;
};
const std::vector<KeyUse>& key_uses() {
  using M = AdapterMethod;
  const std::vector<M> mixtures = {M::kMolora, M::kTopk, M::kHydra, M::kRemix, M::kMultilora, M::kMalora};
  static const std::vector<KeyUse> uses = {
      // ReMix's update is omega B A x with omega from omega_alpha; lora_alpha does not enter it.
      {"lora_alpha", {M::kLora, M::kRslora, M::kMolora, M::kTopk, M::kHydra, M::kSmora, M::kMultilora, M::kMalora}},
      {"num_experts", mixtures},
      {"layer_num_experts", mixtures},
      {"top_k", {M::kTopk, M::kRemix, M::kSmora, M::kMalora, M::kRetrieval}},
      {"use_dora", {M::kLora, M::kRslora}},
      // SMoRA's router starts as its authors' does (PyTorch's Linear init), not from a normal.
      {"router_init_std", {M::kMolora, M::kTopk, M::kHydra, M::kRemix, M::kMalora, M::kLoraflow}},
      {"balance_loss_coef", {M::kTopk, M::kMalora}},
      {"balance_loss_scope", {M::kTopk, M::kMalora}},
      {"routing", {M::kTopk, M::kRemix}},
      {"omega_type", {M::kRemix}},
      {"omega_alpha", {M::kRemix}},
      {"sample_at_inference", {M::kRemix}},
      {"router_objective", {M::kRemix}},
      {"smora_bias_rate", {M::kSmora}},
      {"rank_partition", {M::kSmora}},
      {"experts", {M::kMolora, M::kTopk, M::kRemix, M::kLoraflow, M::kRetrieval}},
      {"freeze_experts", {M::kMolora, M::kTopk, M::kRemix, M::kLoraflow, M::kRetrieval}},
      {"retrieval_layer", {M::kRetrieval}},
  };
  return uses;
}
}  // namespace

const char* method_name(AdapterMethod method) {
  for (const auto& m : kMethods) {
    if (m.method == method) return m.name;
  }
  return "?";
}

AdapterMethod parse_method(const std::string& name, const std::string& where) {
  for (const auto& m : kMethods) {
    if (name == m.name) return m.method;
  }
  fail(where, ": unknown method '", name,
       "' (expected lora, rslora, molora, topk, hydra, remix, smora, multilora, malora, loraflow or retrieval)");
}

bool is_routed(AdapterMethod method) {
  return !is_single_lora(method) && method != AdapterMethod::kMultilora;
}

bool is_single_lora(AdapterMethod method) {
  return method == AdapterMethod::kLora || method == AdapterMethod::kRslora;
}

bool picks_top_k(AdapterMethod method) {
  return method == AdapterMethod::kTopk || method == AdapterMethod::kRemix || method == AdapterMethod::kMalora ||
         method == AdapterMethod::kRetrieval;
}

bool routes_per_block(AdapterMethod method) {
  // ReMix routes once per block (spec: one router per FFN block shared by gate/up/down); so does
  // MixLoRA's top-k, which it is compared with. MoLoRA, HydraLoRA and SMoRA route per projection.
  // LoRA-Flow's gate reads the layer input and weighs every LoRA of the layer; retrieval decides once
  // per sequence.
  return method == AdapterMethod::kRemix || method == AdapterMethod::kTopk ||
         method == AdapterMethod::kLoraflow || method == AdapterMethod::kRetrieval;
}

double ComposedExpert::scale() const {
  return lora_alpha / (use_rslora ? std::sqrt(static_cast<double>(r)) : static_cast<double>(r));
}

namespace {
ComposedExpert parse_expert(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object()) fail(where, ": must be an object {name, r, lora_alpha, use_rslora, target_modules}");
  static const std::set<std::string> known = {"name", "r", "lora_alpha", "use_rslora", "target_modules",
                                              "exclude_modules"};
  for (const auto& [key, value] : json.items()) {
    if (!known.count(key)) fail(where, ": unknown field '", key, "'");
  }
  ComposedExpert e;
  e.name = get_field<std::string>(json, "name", "", where);
  e.r = get_field<int64_t>(json, "r", 0, where);
  e.lora_alpha = get_field<double>(json, "lora_alpha", 0.0, where);
  e.use_rslora = get_field<bool>(json, "use_rslora", false, where);
  e.target_modules = json.value("target_modules", nlohmann::json());
  e.exclude_modules = json.value("exclude_modules", nlohmann::json());
  return e;
}
}  // namespace

AdapterConfig AdapterConfig::from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) fail(source, ": not a JSON object");
  const std::string peft_type = get_field<std::string>(json, "peft_type", "", source);
  AdapterConfig c;
  c.r = get_field<int64_t>(json, "r", 8, source);
  c.lora_alpha = get_field<double>(json, "lora_alpha", 8.0, source);
  c.lora_dropout = get_field<double>(json, "lora_dropout", 0.0, source);
  c.base_model_name_or_path = get_field<std::string>(json, "base_model_name_or_path", "", source);
  if (json.contains("target_modules")) c.target_modules = json["target_modules"];
  if (json.contains("exclude_modules")) c.exclude_modules = json["exclude_modules"];

  if (peft_type == "LORA") {
    for (const auto& [key, value] : json.items()) {
      if (!kPeftLoraKeys.count(key)) fail(source, ": unknown field '", key, "' for peft_type LORA");
    }
    c.method = get_field<bool>(json, "use_rslora", false, source) ? AdapterMethod::kRslora : AdapterMethod::kLora;
    const auto unsupported = [&](const char* key, const nlohmann::json& allowed_default) {
      if (json.contains(key) && !json[key].is_null() && json[key] != allowed_default) {
        fail(source, ": ", key, " = ", describe(json[key]), " is not supported (only ", describe(allowed_default), ")");
      }
    };
    c.use_dora = get_field<bool>(json, "use_dora", false, source);
    unsupported("fan_in_fan_out", false);
    unsupported("bias", "none");
    unsupported("lora_bias", false);
    unsupported("modules_to_save", nullptr);
    unsupported("layers_to_transform", nullptr);
    unsupported("layer_replication", nullptr);
    unsupported("rank_pattern", nlohmann::json::object());
    unsupported("alpha_pattern", nlohmann::json::object());
    unsupported("target_parameters", nullptr);
    unsupported("trainable_token_indices", nullptr);
  } else if (peft_type == "REMORA") {
    static const std::set<std::string> known = {
        "peft_type", "task_type", "base_model_name_or_path", "method", "r", "lora_alpha",
        "lora_dropout", "target_modules", "exclude_modules", "method_pattern", "num_experts",
        "top_k", "layer_num_experts", "router_init_std", "balance_loss_coef", "balance_loss_scope",
        "routing", "omega_type", "omega_alpha", "sample_at_inference", "router_objective",
        "smora_bias_rate", "rank_partition", "inference_mode", "remora_version", "experts",
        "freeze_experts", "retrieval_layer", "use_dora"};
    for (const auto& [key, value] : json.items()) {
      if (!known.count(key)) fail(source, ": unknown field '", key, "' for peft_type REMORA");
    }
    c.method = parse_method(get_field<std::string>(json, "method", "lora", source), source + ": method");
    c.num_experts = get_field<int64_t>(json, "num_experts", c.num_experts, source);
    c.top_k = get_field<int64_t>(json, "top_k", c.top_k, source);
    c.layer_num_experts = get_field<std::vector<int64_t>>(json, "layer_num_experts", {}, source);
    c.router_init_std = get_field<double>(json, "router_init_std", c.router_init_std, source);
    c.balance_loss_coef = get_field<double>(json, "balance_loss_coef", c.balance_loss_coef, source);
    c.balance_loss_scope = choice_field(json, "balance_loss_scope", kScopeChoices, source);
    c.routing = choice_field(json, "routing", kRoutingChoices, source);
    c.omega_type = choice_field(json, "omega_type", kOmegaChoices, source);
    c.router_objective = choice_field(json, "router_objective", kObjectiveChoices, source);
    c.omega_alpha = get_field<double>(json, "omega_alpha", c.omega_alpha, source);
    c.sample_at_inference = get_field<bool>(json, "sample_at_inference", false, source);
    c.smora_bias_rate = get_field<double>(json, "smora_bias_rate", c.smora_bias_rate, source);
    c.rank_partition = get_field<int64_t>(json, "rank_partition", 1, source);
    if (json.contains("experts") && !json["experts"].is_null()) {
      if (!json["experts"].is_array()) fail(source, ": experts must be a list of the composed LoRAs");
      for (size_t i = 0; i < json["experts"].size(); ++i) {
        c.experts.push_back(parse_expert(json["experts"][i], source + ": experts[" + std::to_string(i) + "]"));
      }
      if (json.contains("num_experts") && json["num_experts"] != static_cast<int64_t>(c.experts.size())) {
        fail(source, ": num_experts is ", describe(json["num_experts"]), " but experts lists ", c.experts.size());
      }
      c.num_experts = static_cast<int64_t>(c.experts.size());
    }
    c.freeze_experts = get_field<bool>(json, "freeze_experts", false, source);
    c.use_dora = get_field<bool>(json, "use_dora", false, source);
    c.retrieval_layer = get_field<int64_t>(json, "retrieval_layer", 0, source);
    if (json.contains("method_pattern")) {
      if (!json["method_pattern"].is_object()) fail(source, ": method_pattern must be an object");
      for (const auto& [key, value] : json["method_pattern"].items()) {
        if (!value.is_string()) fail(source, ": method_pattern['", key, "'] must be a method name");
        c.method_pattern[key] = parse_method(value.get<std::string>(), source + ": method_pattern['" + key + "']");
      }
    }
  } else {
    fail(source, ": unsupported peft_type '", peft_type, "' (expected LORA or REMORA)");
  }
  c.validate(source);
  return c;
}

void AdapterConfig::validate(const std::string& source) const {
  REMORA_CHECK(r > 0, source, ": r must be positive, got ", r);
  REMORA_CHECK(r <= kMaxRank, source, ": r is ", r, ", above remora's limit of ", kMaxRank);
  REMORA_CHECK(lora_alpha > 0, source, ": lora_alpha must be positive, got ", lora_alpha);
  REMORA_CHECK(lora_dropout >= 0 && lora_dropout < 1, source, ": lora_dropout must be in [0, 1)");
  if (!(target_modules.is_string() && target_modules == "all-linear")) {
    check_targets(target_modules, "target_modules", source, false);
  }
  check_targets(exclude_modules, "exclude_modules", source, true);
  std::vector<AdapterMethod> methods = {method};
  for (const auto& [key, m] : method_pattern) methods.push_back(m);
  REMORA_CHECK(!use_dora || (is_single_lora(method) && method_pattern.empty()),
               source, ": use_dora needs method lora or rslora without method_pattern, got ", method_name(method));
  for (AdapterMethod m : methods) {
    if (is_single_lora(m)) continue;
    if (m == AdapterMethod::kSmora) {
      REMORA_CHECK(rank_partition > 0 && r % rank_partition == 0, source, ": rank_partition (",
                   rank_partition, ") must divide r (", r, ")");
      REMORA_CHECK(top_k >= 1 && top_k <= r, source, ": top_k (", top_k,
                   ") must be between 1 and the number of rank experts r (", r, ")");
      continue;
    }
    REMORA_CHECK(num_experts >= 1, source, ": num_experts must be positive");
    REMORA_CHECK(num_experts <= kMaxExperts, source, ": num_experts is ", num_experts, ", above remora's limit of ", kMaxExperts);
    for (int64_t n : layer_num_experts) {
      REMORA_CHECK(n >= 1 && n <= kMaxExperts, source, ": layer_num_experts entries must be in [1, ", kMaxExperts, "], got ", n);
    }
    if (picks_top_k(m)) {
      int64_t fewest = num_experts;
      for (int64_t n : layer_num_experts) fewest = std::min(fewest, n);
      REMORA_CHECK(top_k >= 1 && top_k <= fewest, source, ": top_k (", top_k,
                   ") must be between 1 and the number of experts (", fewest, ")");
    }
  }
  validate_composition(source);
  REMORA_CHECK(balance_loss_coef >= 0, source, ": balance_loss_coef must be >= 0");
  REMORA_CHECK(omega_alpha > 0, source, ": omega_alpha must be positive");
  REMORA_CHECK(smora_bias_rate >= 0, source, ": smora_bias_rate must be >= 0");
  REMORA_CHECK(router_init_std >= 0, source, ": router_init_std must be >= 0");
}

void AdapterConfig::validate_composition(const std::string& source) const {
  const bool needs_experts = method == AdapterMethod::kLoraflow || method == AdapterMethod::kRetrieval;
  if (!composed()) {
    REMORA_CHECK(!needs_experts, source, ": method ", method_name(method),
                 " routes between existing LoRAs: build it with remora compose (experts is empty)");
    REMORA_CHECK(!freeze_experts, source, ": freeze_experts needs a composed adapter (experts is empty)");
    return;
  }
  REMORA_CHECK(composes(method), source, ": method ", method_name(method),
               " cannot route existing LoRAs (expected molora, topk, remix, loraflow or retrieval)");
  REMORA_CHECK(method_pattern.empty() && layer_num_experts.empty(), source,
               ": a composed adapter takes neither method_pattern nor layer_num_experts");
  REMORA_CHECK(experts.size() <= static_cast<size_t>(kMaxExperts), source, ": ", experts.size(),
               " experts, above remora's limit of ", kMaxExperts);
  std::set<std::string> names;
  for (size_t i = 0; i < experts.size(); ++i) {
    const ComposedExpert& e = experts[i];
    const std::string where = source + ": experts[" + std::to_string(i) + "]";
    REMORA_CHECK(!e.name.empty() && names.insert(e.name).second, where, ": name must be non-empty and unique, got '",
                 e.name, "'");
    REMORA_CHECK(e.r > 0 && e.r <= kMaxRank, where, ": r must be in [1, ", kMaxRank, "], got ", e.r);
    REMORA_CHECK(e.lora_alpha > 0, where, ": lora_alpha must be positive, got ", e.lora_alpha);
    if (!(e.target_modules.is_string() && e.target_modules == "all-linear")) {
      check_targets(e.target_modules, "target_modules", where, false);
    }
    check_targets(e.exclude_modules, "exclude_modules", where, true);
  }
  REMORA_CHECK(retrieval_layer >= 0, source, ": retrieval_layer must be >= 0, got ", retrieval_layer);
}

std::optional<ModuleAdapterSpec> AdapterConfig::spec_for(const std::string& module_path,
                                                         int64_t layer) const {
  if (matches_targets(module_path, exclude_modules)) return std::nullopt;
  const bool all_linear = target_modules.is_string() && target_modules == "all-linear";
  if (!all_linear && !matches_targets(module_path, target_modules)) return std::nullopt;

  ModuleAdapterSpec spec;
  spec.method = method;
  for (const auto& [suffix, m] : method_pattern) {
    if (matches_name_list(module_path, nlohmann::json::array({suffix}))) spec.method = m;
  }
  spec.alpha = lora_alpha;
  spec.rank = r;
  spec.dora = use_dora;
  if (composed()) {
    // Each expert keeps its own targets: where it adapts nothing, it has rank 0 here and its gate
    // weight multiplies nothing (the other experts' weights are not renormalised).
    spec.rank = 0;
    for (const ComposedExpert& e : experts) {
      const bool targeted = !matches_targets(module_path, e.exclude_modules) &&
                            ((e.target_modules.is_string() && e.target_modules == "all-linear") ||
                             matches_targets(module_path, e.target_modules));
      spec.expert_ranks.push_back(targeted ? e.r : 0);
      spec.expert_scales.push_back(e.scale());
      spec.rank = std::max(spec.rank, spec.expert_ranks.back());
    }
    if (spec.rank == 0) return std::nullopt;
    spec.num_experts = num_experts;
    spec.top_k = picks_top_k(method) ? top_k : num_experts;
    return spec;
  }
  if (spec.method == AdapterMethod::kSmora) {
    // Every rank is an expert; blocks of rank_partition ranks share a router score (the official
    // code's per-rank top-k with a per-rank bias).
    spec.rank = 1;
    spec.num_experts = r;
    spec.top_k = top_k;
    spec.rank_partition = rank_partition;
  } else if (!is_single_lora(spec.method)) {
    spec.num_experts = num_experts;
    if (!layer_num_experts.empty()) {
      REMORA_CHECK(layer < static_cast<int64_t>(layer_num_experts.size()), "layer_num_experts has ",
                   layer_num_experts.size(), " entries but layer ", layer, " is adapted");
      spec.num_experts = layer_num_experts[layer];
    }
    spec.top_k = picks_top_k(spec.method) ? top_k : spec.num_experts;
  }
  return spec;
}

bool AdapterConfig::uses(AdapterMethod m) const {
  if (method == m) return true;
  for (const auto& [key, pattern_method] : method_pattern) {
    if (pattern_method == m) return true;
  }
  return false;
}

void AdapterConfig::check_keys_act(const std::vector<std::string>& keys, const std::string& source) const {
  for (const std::string& key : keys) {
    for (const KeyUse& use : key_uses()) {
      if (key != use.key) continue;
      if (std::any_of(use.methods.begin(), use.methods.end(), [&](AdapterMethod m) { return uses(m); })) break;
      std::string acting;
      for (AdapterMethod m : use.methods) acting += (acting.empty() ? "" : ", ") + std::string(method_name(m));
      fail(source, ": ", key, " has no effect with method ", method_name(method),
           method_pattern.empty() ? "" : " and this method_pattern", " (it acts on ", acting, "); remove it");
    }
  }
}

bool AdapterConfig::writes_peft_lora() const {
  return is_single_lora(method) && method_pattern.empty();
}

nlohmann::json AdapterConfig::to_json() const {
  nlohmann::json j = {
      {"base_model_name_or_path", base_model_name_or_path},
      {"r", r},
      {"lora_alpha", lora_alpha},
      {"lora_dropout", lora_dropout},
      {"target_modules", target_modules},
      {"exclude_modules", exclude_modules},
      {"task_type", "CAUSAL_LM"},
      {"inference_mode", true},
  };
  if (writes_peft_lora()) {
    j["peft_type"] = "LORA";
    j["use_rslora"] = method == AdapterMethod::kRslora;
    j["bias"] = "none";
    j["fan_in_fan_out"] = false;
    j["init_lora_weights"] = true;
    j["modules_to_save"] = nullptr;
    j["rank_pattern"] = nlohmann::json::object();
    j["alpha_pattern"] = nlohmann::json::object();
    j["use_dora"] = use_dora;
    return j;
  }
  j["peft_type"] = "REMORA";
  j["method"] = method_name(method);
  j["num_experts"] = num_experts;
  j["top_k"] = top_k;
  j["layer_num_experts"] = layer_num_experts;
  j["router_init_std"] = router_init_std;
  j["balance_loss_coef"] = balance_loss_coef;
  j["balance_loss_scope"] = choice_name(kScopeChoices, balance_loss_scope);
  j["routing"] = choice_name(kRoutingChoices, routing);
  j["omega_type"] = choice_name(kOmegaChoices, omega_type);
  j["omega_alpha"] = omega_alpha;
  j["sample_at_inference"] = sample_at_inference;
  j["router_objective"] = choice_name(kObjectiveChoices, router_objective);
  j["smora_bias_rate"] = smora_bias_rate;
  j["rank_partition"] = rank_partition;
  if (composed()) {
    nlohmann::json list = nlohmann::json::array();
    for (const ComposedExpert& e : experts) {
      list.push_back({{"name", e.name}, {"r", e.r}, {"lora_alpha", e.lora_alpha}, {"use_rslora", e.use_rslora},
                      {"target_modules", e.target_modules}, {"exclude_modules", e.exclude_modules}});
    }
    j["experts"] = list;
    j["freeze_experts"] = freeze_experts;
    j["retrieval_layer"] = retrieval_layer;
  }
  nlohmann::json patterns = nlohmann::json::object();
  for (const auto& [key, m] : method_pattern) patterns[key] = method_name(m);
  j["method_pattern"] = patterns;
  return j;
}

AdapterConfig read_adapter_config(const std::string& dir, const nlohmann::json& overrides) {
  const std::filesystem::path path = std::filesystem::path(dir) / "adapter_config.json";
  if (!path_exists(path)) fail(path.string(), ": missing (an adapter folder needs adapter_config.json)");
  nlohmann::json json = read_json_file(path.string(), kMaxConfigBytes);
  std::vector<std::string> keys;
  for (const auto& [key, value] : overrides.items()) {
    json[key] = value;
    keys.push_back(key);
  }
  const std::string source = overrides.empty() ? path.string() : path.string() + " with --adapter-set";
  AdapterConfig config = AdapterConfig::from_json(json, source);
  config.check_keys_act(keys, source);
  return config;
}

}  // namespace remora
