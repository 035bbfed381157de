// `remora merge`: fold a LoRA / rsLoRA adapter into its base and write a plain HF checkpoint.
#include <filesystem>
#include <iostream>

#include "adapters/adapter_io.h"
#include "cli/common.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/file_util.h"
#include "model/loader.h"

namespace remora {
namespace {
namespace fs = std::filesystem;

struct MergeOptions {
  std::string model;
  std::string adapter;
  std::string out;
  bool overwrite = false;
};

void run_merge(const MergeOptions& options) {
  refuse_output_overlapping_inputs(options.out, "--out", {{options.model, "--model"}, {options.adapter, "--adapter"}});
  const ModelConfig config = ModelConfig::load(options.model);
  // Merge in the dtype the base is stored in, so the output is the same kind of checkpoint.
  // (float16 has no CPU matrix products in LibTorch: such a base is merged, and written, in float32.)
  c10::ScalarType dtype = parse_compute_dtype(config.torch_dtype, options.model + "/config.json torch_dtype");
  if (dtype == at::kHalf) dtype = at::kFloat;
  auto base = load_causal_lm(options.model, dtype);
  auto adapted = load_adapter(base, options.adapter);

  if (path_exists(options.out) && !options.overwrite) {
    fail(options.out, ": already exists (pass --overwrite to replace it)");  // before the slow part
  }
  // A probe sequence shows how much the stored dtype's rounding moved the logits.
  at::NoGradGuard no_grad;
  const int64_t probe_length = std::min<int64_t>(32, config.vocab_size);
  at::Tensor probe = at::arange(probe_length, at::kLong).unsqueeze(0);
  at::Tensor before = base->forward(probe, {});
  merge_into_base(*adapted);
  at::Tensor after = base->forward(probe, {});

  replace_folder_atomically(options.out, options.overwrite, [&](const std::string& temp) {
    save_hf_checkpoint(*base, temp);
    copy_companion_files(options.model, temp);
  });
  std::cout << "merged " << adapted->adapted().size() << " adapted projections into " << options.out
            << " (" << torch_dtype_name(dtype) << "); max |logit change| from merging on a "
            << probe_length << "-token probe: " << (after - before).abs().max().item<double>() << "\n";
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto options = std::make_shared<MergeOptions>();
  CLI::App* command = app.add_subcommand(
      "merge", "Fold a LoRA/rsLoRA adapter into the base weights (in fp32) and write a HF checkpoint");
  command->add_option("--model", options->model, "base model folder")->required();
  command->add_option("--adapter", options->adapter, "adapter folder")->required();
  command->add_option("--out", options->out, "output model folder")->required();
  command->add_flag("--overwrite", options->overwrite, "replace an existing output folder");
  command->callback([options] { run_merge(*options); });
}

}  // namespace remora
