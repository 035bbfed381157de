// Recipe loading: YAML sections, a field table with defaults and docs, command-line overrides.
#include "train/recipe.h"

#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include "core/json_input.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/resources.h"
#include "core/yaml_json.h"

namespace remora {

const std::map<std::string, DataFormat>& data_format_names() {
  static const std::map<std::string, DataFormat> names = {
      {"auto", DataFormat::kAuto}, {"alpaca", DataFormat::kAlpaca}, {"chat", DataFormat::kChat},
      {"prompt_completion", DataFormat::kPromptCompletion}, {"text", DataFormat::kText}};
  return names;
}

namespace {

constexpr int64_t kMaxSamples = 64;

struct Field {
  const char* key;
  const char* fallback;  // the default, as written in YAML
  const char* doc;
  std::function<void(Recipe&, const nlohmann::json&, const std::string&)> set;
};

template <typename T>
T typed(const nlohmann::json& value, const std::string& where, const char* expected) {
  try {
    if constexpr (std::is_same_v<T, double>) {
      if (!value.is_number()) throw std::runtime_error("");
    } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (!value.is_number_integer()) throw std::runtime_error("");
    }
    return value.get<T>();
  } catch (const std::exception&) {
    fail(where, ": expected ", expected, ", got ", describe(value));
  }
}

int64_t integer_at_least(const nlohmann::json& value, const std::string& where, int64_t minimum) {
  const auto n = typed<int64_t>(value, where, ("an integer >= " + std::to_string(minimum)).c_str());
  REMORA_CHECK(n >= minimum, where, ": must be >= ", minimum, ", got ", n);
  return n;
}

double number_in(const nlohmann::json& value, const std::string& where, double low, double high) {
  const auto x = typed<double>(value, where, "a number");
  REMORA_CHECK(x >= low && x <= high, where, ": must be in [", low, ", ", high, "], got ", x);
  return x;
}

// An Adam beta: in [0, 1).
double fraction_below_one(const nlohmann::json& value, const std::string& where) {
  const auto x = typed<double>(value, where, "a number in [0, 1)");
  REMORA_CHECK(x >= 0 && x < 1, where, ": must be in [0, 1), got ", x);
  return x;
}

// Each setter validates its own value; `where` is "file: key".
const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      {"model.path", "(required)", "Hugging Face model folder",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.model_path = typed<std::string>(v, w, "a path"); }},
      {"model.dtype", "bfloat16", "dtype of the frozen base weights: bfloat16 or float32",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.model_dtype = typed<std::string>(v, w, "bfloat16 or float32"); }},
      {"model.adapter", "\"\"", "start from this adapter folder (e.g. remora compose's output); adapter.* keys then "
       "override its adapter_config.json",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.adapter_path = typed<std::string>(v, w, "a path"); }},
      {"model.device", "cpu", "cpu, cuda or cuda:N",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.device = typed<std::string>(v, w, "a device"); }},
      {"data.train", "(required)", "training JSONL file",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.train_file = typed<std::string>(v, w, "a path"); }},
      {"data.validation", "\"\"", "validation JSONL file (default: hold out validation_fraction of data.train)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.validation_file = typed<std::string>(v, w, "a path"); }},
      {"data.validation_fraction", "0.05", "share of data.train held out when there is no validation file",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.validation_fraction = number_in(v, w, 0, 0.5); }},
      {"data.format", "auto", "auto | alpaca | chat | prompt_completion | text (auto: decided per line by its keys)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         const std::string f = typed<std::string>(v, w, "a format name");
         const auto it = data_format_names().find(f);
         if (it == data_format_names().end()) fail(w, ": unknown format '", f, "' (expected auto, alpaca, chat, prompt_completion or text)");
         r.format = it->second;
       }},
      {"data.max_seq_len", "512", "longest example in tokens; longer ones are truncated and counted",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.max_seq_len = integer_at_least(v, w, 2); }},
      {"data.train_on_prompt", "false", "also compute the loss on prompt tokens",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.train_on_prompt = typed<bool>(v, w, "true or false"); }},
      {"data.skip_bad_lines", "false", "skip malformed lines with a counted warning instead of stopping",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.skip_bad_lines = typed<bool>(v, w, "true or false"); }},
      {"train.steps", "0", "optimiser steps (0: epochs x batches per epoch / grad_accum)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.steps = integer_at_least(v, w, 0); }},
      {"train.epochs", "1", "passes over the data when train.steps is 0",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.epochs = integer_at_least(v, w, 1); }},
      {"train.batch_size", "8", "examples per micro-batch (ReMix runs M x this many rows)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.batch_size = integer_at_least(v, w, 1); }},
      {"train.grad_accum", "1", "micro-batches per optimiser step",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.grad_accum = integer_at_least(v, w, 1); }},
      {"train.samples", "4", "ReMix: M routed samples per input (>= 2 for RLOO)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.samples = integer_at_least(v, w, 1);
         REMORA_CHECK(r.samples <= kMaxSamples, w, ": ", r.samples, " samples; at most ", kMaxSamples,
                      " (each is a full forward and backward pass)");
       }},
      {"train.seed", "0", "seed for initialisation, shuffling, dropout and routing samples",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.seed = typed<uint64_t>(v, w, "a non-negative integer"); }},
      {"train.activation_checkpointing", "false",
       "keep only each decoder layer's input in the forward and recompute the layer in the backward (less "
       "memory for long rows, about one more forward of time; the same gradients)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.activation_checkpointing = typed<bool>(v, w, "true or false");
       }},
      {"train.grad_clip", "1.0", "clip the gradient norm to this (0: off)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.grad_clip = typed<double>(v, w, "a number >= 0");
         REMORA_CHECK(r.grad_clip >= 0, w, ": must be >= 0");
       }},
      {"train.router_clip", "auto",
       "separate: routers' gradient norm clipped on its own; joint: one global norm; auto: separate with "
       "ReMix routers (log Q grows with length), joint otherwise",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         const std::string mode = typed<std::string>(v, w, "auto, separate or joint");
         if (mode != "auto" && mode != "separate" && mode != "joint") {
           fail(w, ": expected auto, separate or joint, got '", mode, "'");
         }
         r.clip_routers_separately = mode == "auto" ? std::nullopt : std::optional<bool>(mode == "separate");
       }},
      {"train.backend", "auto", "c10d backend when several workers train (torchrun or remora launch): gloo, "
       "nccl, or auto (nccl on CUDA, gloo on CPU)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.backend = typed<std::string>(v, w, "auto, gloo or nccl");
         if (r.backend != "auto" && r.backend != "gloo" && r.backend != "nccl") {
           fail(w, ": expected auto, gloo or nccl, got '", r.backend, "'");
         }
       }},
      {"train.dist_timeout", "300",
       "seconds a worker waits for the others (rendezvous, each collective) before it stops with an error",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.dist_timeout = integer_at_least(v, w, 1);
         REMORA_CHECK(r.dist_timeout <= 86400, w, ": at most 86400 seconds, got ", r.dist_timeout);
       }},
      {"optim.lr", "2e-4", "peak learning rate (AdamW)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.lr = typed<double>(v, w, "a positive number");
         REMORA_CHECK(r.lr > 0, w, ": must be positive");
       }},
      {"optim.router_lr", "(optim.lr)", "peak learning rate of routers",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.router_lr = typed<double>(v, w, "a positive number");
         REMORA_CHECK(*r.router_lr > 0, w, ": must be positive");
       }},
      {"optim.weight_decay", "0.0", "AdamW decoupled weight decay (never on routers, biases or norms)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.weight_decay = typed<double>(v, w, "a number >= 0");
         REMORA_CHECK(r.weight_decay >= 0, w, ": must be >= 0");
       }},
      {"optim.beta1", "0.9", "AdamW beta1",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.beta1 = fraction_below_one(v, w); }},
      {"optim.beta2", "0.999", "AdamW beta2",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.beta2 = fraction_below_one(v, w); }},
      {"optim.eps", "1e-8", "AdamW epsilon",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.eps = typed<double>(v, w, "a positive number");
         REMORA_CHECK(r.eps > 0, w, ": must be positive (Adam divides by sqrt(v) + eps), got ", r.eps);
       }},
      {"schedule.type", "cosine", "constant | linear | cosine decay after warmup",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         const std::string t = typed<std::string>(v, w, "constant, linear or cosine");
         if (t == "constant") r.schedule = ScheduleType::kConstant;
         else if (t == "linear") r.schedule = ScheduleType::kLinear;
         else if (t == "cosine") r.schedule = ScheduleType::kCosine;
         else fail(w, ": unknown schedule '", t, "' (expected constant, linear or cosine)");
       }},
      {"schedule.warmup_steps", "0", "linear warmup from 0 to the peak learning rate",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.warmup_steps = integer_at_least(v, w, 0); }},
      {"schedule.min_lr_ratio", "0.0", "learning rate at the end, as a share of the peak",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.min_lr_ratio = number_in(v, w, 0, 1); }},
      {"output.dir", "(required)", "output folder: adapter/, checkpoints/, metrics.jsonl, recipe.json",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.output_dir = typed<std::string>(v, w, "a path"); }},
      {"output.overwrite", "false", "replace an existing output folder (otherwise refused)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.overwrite = typed<bool>(v, w, "true or false"); }},
      {"output.checkpoint_every", "100", "save a resumable checkpoint every N steps (0: only at the end)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.checkpoint_every = integer_at_least(v, w, 0); }},
      {"output.keep_last", "2", "checkpoints kept (older ones are deleted)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.keep_last = integer_at_least(v, w, 1); }},
      {"log.every", "1", "write a progress line and a metrics record every N steps",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.log_every = integer_at_least(v, w, 1); }},
      {"eval.every", "0", "validation loss every N steps (0: only at the end)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) { r.eval_every = integer_at_least(v, w, 0); }},
      {"threads", "0", "intra-op CPU threads (0: all cores, shared among the workers on one machine)",
       [](Recipe& r, const nlohmann::json& v, const std::string& w) {
         r.threads = integer_at_least(v, w, 0);
         if (r.threads > 0) check_thread_count(r.threads, w);
       }},
  };
  return table;
}

// Flattens {section: {key: value}} to "section.key" -> value; adapter.* keys keep nested values.
void flatten(const nlohmann::json& root, const std::string& source, std::map<std::string, nlohmann::json>& out) {
  if (!root.is_object()) fail(source, ": a recipe must be a YAML mapping of sections");
  for (const auto& [name, section] : root.items()) {
    if (!section.is_object()) {
      out[name] = section;
      continue;
    }
    for (const auto& [key, value] : section.items()) out[name + "." + key] = value;
  }
}

}  // namespace

Recipe Recipe::load(const std::string& path, const std::vector<std::string>& overrides) {
  if (!path_exists(path)) fail(path, ": recipe file does not exist");
  std::map<std::string, nlohmann::json> values;
  std::map<std::string, std::string> origin;  // key -> where it was set, for messages
  flatten(read_yaml_file(path), path, values);
  for (const auto& [key, value] : values) origin[key] = path;
  for (const auto& assignment : overrides) {
    const size_t equals = assignment.find('=');
    if (equals == std::string::npos || equals == 0) {
      fail("command line: expected key=value, got '", assignment, "'");
    }
    const std::string key = assignment.substr(0, equals);
    values[key] = parse_yaml(assignment.substr(equals + 1), "command line: " + key);
    origin[key] = "command line";
  }

  Recipe recipe;
  recipe.source = path;
  nlohmann::json adapter = {{"peft_type", "REMORA"}};
  std::vector<std::string> adapter_keys;
  for (const auto& [key, value] : values) {
    const std::string where = origin[key] + ": " + key;
    if (key.rfind("adapter.", 0) == 0) {
      adapter[key.substr(8)] = value;
      recipe.adapter_overrides[key.substr(8)] = value;
      if (!value.is_null()) adapter_keys.push_back(key.substr(8));  // null: the default
      continue;
    }
    const auto& table = fields();
    const std::string& name = key;  // (C++17 lambdas cannot capture a structured binding)
    const auto field = std::find_if(table.begin(), table.end(), [&](const Field& f) { return name == f.key; });
    if (field == table.end()) fail(origin[key], ": unknown key '", key, "' (remora train --help-recipe lists them)");
    field->set(recipe, value, where);
  }
  if (adapter.contains("method") && adapter["method"] == "full") {
    REMORA_CHECK(recipe.adapter_path.empty(), origin["model.adapter"], ": model.adapter cannot be used with adapter.method: full");
    recipe.full_finetune = true;
  } else if (!recipe.adapter_path.empty()) {
    recipe.adapter = read_adapter_config(recipe.adapter_path, recipe.adapter_overrides);
  } else {
    recipe.adapter = AdapterConfig::from_json(adapter, path + ": adapter");
    recipe.adapter.check_keys_act(adapter_keys, path + ": adapter");
  }
  // Keys that act only with ReMix routers (recipes carry only keys that act).
  const bool remix = !recipe.full_finetune && recipe.adapter.uses(AdapterMethod::kRemix);
  if (values.count("train.samples")) {
    REMORA_CHECK(remix, origin["train.samples"], ": train.samples acts only on ReMix routers (this adapter has none); remove it");
    REMORA_CHECK(recipe.samples >= 2 || recipe.adapter.router_objective != RouterObjective::kRloo,
                 origin["train.samples"], ": train.samples must be >= 2 for RLOO (its leave-one-out baseline), got ",
                 recipe.samples);
  }
  const bool routed = !recipe.full_finetune && (is_routed(recipe.adapter.method) || !recipe.adapter.method_pattern.empty());
  for (const char* key : {"optim.router_lr", "train.router_clip"}) {
    REMORA_CHECK(!values.count(key) || routed, origin[key], ": ", key, " acts only on routed adapters; remove it");
  }
  // A sequence decision is made from the whole prompt; predicting the prompt's own tokens with it
  // would let each of them see the tokens after it.
  REMORA_CHECK(!(recipe.train_on_prompt && !recipe.full_finetune &&
                 recipe.adapter.routing == RoutingGranularity::kSequence &&
                 (recipe.adapter.uses(AdapterMethod::kRemix) || recipe.adapter.uses(AdapterMethod::kTopk))),
               path, ": adapter.routing: sequence cannot train on the prompt (data.train_on_prompt): the prompt's "
               "tokens would be predicted with a routing decision made from the tokens after them");
  recipe.adapter.base_model_name_or_path = recipe.model_path;
  for (const auto& [member, key] : {std::pair{&recipe.model_path, "model.path"},
                                    {&recipe.train_file, "data.train"},
                                    {&recipe.output_dir, "output.dir"}}) {
    if (member->empty()) fail(path, ": missing required key '", key, "'");
  }
  return recipe;
}

nlohmann::json Recipe::to_json() const {
  static const char* schedules[] = {"constant", "linear", "cosine"};
  static const char* formats[] = {"auto", "alpaca", "chat", "prompt_completion", "text"};
  nlohmann::json adapter_json = full_finetune ? nlohmann::json{{"method", "full"}} : adapter.to_json();
  return {
      {"model", {{"path", model_path}, {"adapter", adapter_path}, {"dtype", model_dtype}, {"device", device}}},
      {"adapter", adapter_json},
      {"data", {{"train", train_file}, {"validation", validation_file},
                {"validation_fraction", validation_fraction}, {"format", formats[static_cast<int>(format)]},
                {"max_seq_len", max_seq_len}, {"train_on_prompt", train_on_prompt},
                {"skip_bad_lines", skip_bad_lines}}},
      {"train", {{"steps", steps}, {"epochs", epochs}, {"batch_size", batch_size},
                 {"grad_accum", grad_accum}, {"samples", samples}, {"seed", seed},
                 {"grad_clip", grad_clip}, {"activation_checkpointing", activation_checkpointing},
                 {"router_clip", !clip_routers_separately ? "auto" : *clip_routers_separately ? "separate" : "joint"},
                 {"backend", backend}, {"dist_timeout", dist_timeout}}},
      {"optim", {{"lr", lr}, {"router_lr", router_lr ? nlohmann::json(*router_lr) : nlohmann::json(nullptr)},
                 {"weight_decay", weight_decay}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}}},
      {"schedule", {{"type", schedules[static_cast<int>(schedule)]}, {"warmup_steps", warmup_steps},
                    {"min_lr_ratio", min_lr_ratio}}},
      {"output", {{"dir", output_dir}, {"overwrite", overwrite}, {"checkpoint_every", checkpoint_every},
                  {"keep_last", keep_last}}},
      {"log", {{"every", log_every}}},
      {"eval", {{"every", eval_every}}},
      {"threads", threads},
  };
}

std::string recipe_reference() {
  std::ostringstream out;
  for (const auto& f : fields()) out << "  " << f.key << " (" << f.fallback << "): " << f.doc << "\n";
  out << "  adapter.* : adapter_config.json keys (method: lora | rslora | molora | topk | hydra | remix | "
         "smora | full, r, lora_alpha, lora_dropout, target_modules, exclude_modules, num_experts, top_k, "
         "routing (token | sequence), omega_type (rslora | lora), omega_alpha, router_objective (rloo | "
         "reinforce | frozen), sample_at_inference, balance_loss_coef, balance_loss_scope (pooled | layer), "
         "smora_bias_rate, rank_partition, method_pattern, layer_num_experts, router_init_std); a key "
         "that has no effect on the adapter's methods is an error\n";
  return out.str();
}

}  // namespace remora
