// `remora generate`: continue token prompts with greedy or sampled decoding.
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "eval/generate.h"
#include "model/decoder.h"

namespace remora {
namespace {

struct GenerateCommandOptions {
  ModelOptions model;
  std::string ids;
  GenerationOptions generation;
  bool no_cache = false;
  bool ignore_eos = false;
};

void run_generate(GenerateCommandOptions options) {
  auto model = options.model.load();
  const auto prompts = parse_id_rows(options.ids, "--ids", model->config().vocab_size);
  options.generation.use_cache = !options.no_cache;
  if (!options.ignore_eos) options.generation.eos_token_ids = model->config().eos_token_ids;

  if (prompts.size() == 1) {
    // One prompt streams its tokens as they come.
    bool first = true;
    generate(*model, prompts, options.generation, [&](int64_t, int64_t token) {
      std::cout << (first ? "" : ",") << token << std::flush;
      first = false;
    });
    std::cout << "\n";
    return;
  }
  for (const auto& row : generate(*model, prompts, options.generation)) {
    for (size_t i = 0; i < row.size(); ++i) std::cout << (i ? "," : "") << row[i];
    std::cout << "\n";
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "generate", "Continue prompts; prints the new token ids of each prompt on its own line");
  options->model.add_to(*command);
  auto& g = options->generation;
  command->add_option("--ids", options->ids, "prompt token ids: rows separated by ';', ids by ','")
      ->required();
  command->add_option("--max-new-tokens", g.max_new_tokens, "most tokens to generate per prompt")
      ->capture_default_str();
  command->add_option("--temperature", g.sampling.temperature, "0 = greedy; > 0 samples")
      ->capture_default_str();
  command->add_option("--top-k", g.sampling.top_k, "sample among the k most likely tokens (0 = all)")
      ->capture_default_str();
  command->add_option("--top-p", g.sampling.top_p, "nucleus sampling mass (1 = off)")
      ->capture_default_str();
  command->add_option("--seed", g.sampling.seed, "sampling seed")->capture_default_str();
  command->add_flag("--ignore-eos", options->ignore_eos, "do not stop at the model's eos tokens");
  command->add_flag("--no-cache", options->no_cache,
                    "recompute every position at each step instead of using the KV cache (slow; for checks)");
  command->callback([options] { run_generate(*options); });
}

}  // namespace remora
