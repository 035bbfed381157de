// Options and helpers shared by the CLI verbs (model loading flags, id lists, output folders).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/file_util.h"

namespace remora {

class CausalLM;
class AdaptedModel;

// A base model and, with --adapter, the adapter attached to it (which must outlive every use of
// the model, so both travel together). Dereferences to the model.
struct LoadedModel {
  std::shared_ptr<CausalLM> model;
  std::shared_ptr<AdaptedModel> adapter;  // nullptr without --adapter

  CausalLM* operator->() const { return model.get(); }
  CausalLM& operator*() const { return *model; }
};

// --model, --adapter, --dtype, --device: every verb that loads a model takes these, with the same
// meaning and one loading path.
struct ModelOptions {
  std::string dir;
  std::string adapter;
  std::string dtype = "bfloat16";
  std::string device = "cpu";
  std::vector<std::string> adapter_overrides;  // --adapter-set KEY=VALUE
  uint64_t routing_seed = 0;                   // noise of routers that sample at inference

  void add_to(CLI::App& command);
  // --model and --adapter, for the guard that keeps outputs away from inputs.
  std::vector<InputPath> inputs() const { return {{dir, "--model"}, {adapter, "--adapter"}}; }
  LoadedModel load() const;
};

// "1,2,3;4,5" -> {{1,2,3},{4,5}}; throws Error naming the flag and the bad item. Each id must be
// below vocab_size.
std::vector<std::vector<int64_t>> parse_id_rows(const std::string& text, const std::string& flag,
                                                int64_t vocab_size);

// Applies "key=value" to a JSON object: the value is JSON when it parses as JSON (numbers,
// booleans, null, lists, objects), else a string. Throws Error naming `flag` if there is no '='.
void apply_json_assignment(nlohmann::json& object, const std::string& assignment, const std::string& flag);

// A validator for seed options: a decimal integer in [0, 2^64), so that -1 or 2^64 is an error
// instead of silently wrapping or saturating to some other seed.
CLI::Validator seed_validator();

// Registration of each verb; one file each.
void add_init_model_command(CLI::App& app);
void add_forward_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_compose_command(CLI::App& app);
void add_init_adapter_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_launch_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_train_tokenizer_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_routing_command(CLI::App& app);
void add_serve_command(CLI::App& app);

}  // namespace remora
