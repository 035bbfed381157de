// A training recipe: YAML with documented defaults, overridable by `key=value` on the command line.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "adapters/adapter_config.h"

namespace remora {

enum class DataFormat { kAuto, kAlpaca, kChat, kPromptCompletion, kText };
// "auto", "alpaca", "chat", "prompt_completion", "text": for data.format and the --format flags.
const std::map<std::string, DataFormat>& data_format_names();
enum class ScheduleType { kConstant, kLinear, kCosine };

// Every setting of `remora train`. The YAML keys are these fields' dotted names ("optim.lr");
// recipe_fields() lists each with its default and meaning, and is what --help-recipe prints.
struct Recipe {
  std::string source;  // the recipe file, for messages

  // model
  std::string model_path;
  std::string model_dtype = "bfloat16";  // frozen base weights; adapters and optimiser are fp32
  std::string device = "cpu";

  // adapter: `method: full` trains every weight (fp32); otherwise an AdapterConfig (REMORA keys)
  bool full_finetune = false;
  AdapterConfig adapter;
  // model.adapter: an adapter folder to start from (its config with adapter.* keys applied, which
  // adapter_overrides holds); "" = a fresh adapter from the adapter.* keys.
  std::string adapter_path;
  nlohmann::json adapter_overrides = nlohmann::json::object();

  // data
  std::string train_file;
  std::string validation_file;       // "" = hold out validation_fraction of train_file
  double validation_fraction = 0.05;
  DataFormat format = DataFormat::kAuto;
  int64_t max_seq_len = 512;
  bool train_on_prompt = false;
  bool skip_bad_lines = false;

  // train
  int64_t steps = 0;   // 0 = epochs * batches per epoch / grad_accum
  int64_t epochs = 1;
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t samples = 4;  // M routed samples per input (remix only; >= 2 for RLOO)
  uint64_t seed = 0;
  double grad_clip = 1.0;  // gradient norm; 0 = off
  // Decoder layers keep only their input in the forward and run again in the backward.
  bool activation_checkpointing = false;
  // Whether routers' gradients are clipped to grad_clip on their own instead of inside one global
  // norm with the adapters'. Default (nullopt): on their own with ReMix routers, whose log Q (and so
  // gradient norm) grows with sequence length; one global norm otherwise, as the baselines' papers.
  std::optional<bool> clip_routers_separately;
  // Several workers (torchrun or `remora launch`): the c10d backend and how long a worker waits for
  // the others before it stops with an error (a dead or hung worker, an unreachable rendezvous).
  std::string backend = "auto";
  int64_t dist_timeout = 300;

  // optim
  double lr = 2e-4;
  std::optional<double> router_lr;  // default: lr
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

  // schedule
  ScheduleType schedule = ScheduleType::kCosine;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.0;

  // output
  std::string output_dir;
  bool overwrite = false;
  int64_t checkpoint_every = 100;  // 0 = only at the end
  int64_t keep_last = 2;

  // logging and validation
  int64_t log_every = 1;
  int64_t eval_every = 0;  // 0 = only at the end
  int64_t threads = 0;     // 0 = all cores (divided among the workers on one machine)

  // Reads a YAML file and applies `overrides` ("optim.lr=1e-4"). Throws Error naming the file (or
  // "command line") and the key for unknown keys and bad values; checks required keys and ranges.
  static Recipe load(const std::string& path, const std::vector<std::string>& overrides = {});
  // The whole recipe as JSON with every default filled in (saved next to the outputs).
  nlohmann::json to_json() const;
};

// One line per key: "optim.lr (2e-4): peak learning rate".
std::string recipe_reference();

}  // namespace remora
