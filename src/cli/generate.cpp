// `remora generate`: continue token prompts with greedy or sampled decoding.
#include <iostream>

#include "cli/common.h"
#include "core/error.h"
#include "eval/text_generation.h"
#include "model/decoder.h"
#include "tokenizer/pretrained.h"

namespace remora {
namespace {

struct GenerateCommandOptions {
  ModelOptions model;
  std::string ids;
  TextGenerationOptions text;  // .generation is used for --ids too
  bool no_cache = false;
  bool ignore_eos = false;
  std::vector<std::string> prompts;  // --prompt: raw text, post-processor specials added
  std::vector<std::string> chats;    // --chat: a user message rendered with the chat template
  std::string system;                // --system: system message for --chat
};

// Token rows for --prompt / --chat, through the model folder's tokenizer.
std::vector<std::vector<int64_t>> text_prompts(const GenerateCommandOptions& options, const PretrainedTokenizer& tok) {
  std::vector<std::vector<int64_t>> rows;
  for (const auto& prompt : options.prompts) rows.push_back(tok.tokenizer.encode(prompt, /*add_special_tokens=*/true));
  for (const auto& chat : options.chats) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!options.system.empty()) messages.push_back({{"role", "system"}, {"content", options.system}});
    messages.push_back({{"role", "user"}, {"content", chat}});
    // The rendered template already holds BOS where the model wants it, as in transformers.
    rows.push_back(tok.tokenizer.encode(tok.apply_chat_template(messages, /*add_generation_prompt=*/true), false));
  }
  for (const auto& row : rows) {
    if (row.empty()) fail("--prompt/--chat: a prompt encodes to no tokens");
  }
  return rows;
}

// Text mode: one prompt streams decoded text; several print each continuation as a JSON string line.
void generate_text(CausalLM& model, const GenerateCommandOptions& options) {
  const PretrainedTokenizer tok = PretrainedTokenizer::load(options.model.dir);
  const auto prompts = text_prompts(options, tok);
  const auto texts = generate_texts(model, tok.tokenizer, prompts, options.text,
                                    [](const std::string& text) { std::cout << text << std::flush; });
  if (prompts.size() == 1) {
    std::cout << "\n";
    return;
  }
  for (const auto& text : texts) {
    std::cout << nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
}

void run_generate(GenerateCommandOptions options) {
  const int sources = !options.ids.empty() + !options.prompts.empty() + !options.chats.empty();
  if (sources != 1) fail("generate: give exactly one of --ids, --prompt and --chat");
  if (!options.ids.empty() && !options.text.stop_strings.empty()) fail("--stop needs --prompt or --chat (text)");
  auto model = options.model.load();
  options.text.generation.use_cache = !options.no_cache;
  if (!options.ignore_eos) options.text.generation.eos_token_ids = model->config().eos_token_ids;
  if (options.ids.empty()) {
    generate_text(*model, options);
    return;
  }
  const auto prompts = parse_id_rows(options.ids, "--ids", model->config().vocab_size);

  if (prompts.size() == 1) {
    // One prompt streams its tokens as they come.
    bool first = true;
    generate(*model, prompts, options.text.generation, [&](int64_t, int64_t token) {
      std::cout << (first ? "" : ",") << token << std::flush;
      first = false;
      return true;
    });
    std::cout << "\n";
    return;
  }
  for (const auto& row : generate(*model, prompts, options.text.generation)) {
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
  auto& g = options->text.generation;
  command->add_option("--ids", options->ids, "prompt token ids: rows separated by ';', ids by ','");
  command->add_option("--prompt", options->prompts,
                      "prompt text, encoded with the model's tokenizer.json (repeatable: one row each); prints text");
  command->add_option("--chat", options->chats,
                      "a user message, rendered with the model's chat template (repeatable); prints text");
  command->add_option("--system", options->system, "system message for --chat");
  command->add_option("--max-new-tokens", g.max_new_tokens, "most tokens to generate per prompt")
      ->capture_default_str();
  command->add_option("--temperature", g.sampling.temperature, "0 = greedy; > 0 samples")
      ->capture_default_str();
  command->add_option("--top-k", g.sampling.top_k, "sample among the k most likely tokens (0 = all)")
      ->capture_default_str();
  command->add_option("--top-p", g.sampling.top_p, "nucleus sampling mass (1 = off)")
      ->capture_default_str();
  command->add_option("--seed", g.sampling.seed, "sampling seed")->check(seed_validator())->capture_default_str();
  command->add_option("--stop", options->text.stop_strings,
                      "with --prompt/--chat: end a continuation before this text (repeatable)");
  command->add_option("--batch-size", options->text.batch_size, "with --prompt/--chat: prompts generated together")
      ->capture_default_str();
  command->add_flag("--ignore-eos", options->ignore_eos, "do not stop at the model's eos tokens");
  command->add_flag("--no-cache", options->no_cache,
                    "recompute every position at each step instead of using the KV cache (slow; for checks)");
  command->callback([options] { run_generate(*options); });
}

}  // namespace remora
