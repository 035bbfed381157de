// `remora train-tokenizer`: a byte-level BPE tokenizer.json (+ tokenizer_config.json) from text files.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "core/file_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace remora {
namespace {
namespace fs = std::filesystem;

struct TrainTokenizerOptions {
  std::vector<std::string> corpus;
  int64_t vocab_size = 1024;
  std::string out;
  bool overwrite = false;
};

// ChatML, so that `generate --chat` works with models that use the trained tokenizer.
const char* const kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

void run_train_tokenizer(const TrainTokenizerOptions& options) {
  const fs::path out(options.out);
  // The folder may be a model's (a new tokenizer for it); only the two files written must not be a corpus.
  std::vector<InputPath> corpus;
  for (const auto& path : options.corpus) corpus.push_back({path, "--corpus"});
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    refuse_output_overlapping_inputs((out / name).string(), "--out", corpus);
  }
  if (path_exists(out / "tokenizer.json") && !options.overwrite) {
    fail(options.out, "/tokenizer.json: already exists (pass --overwrite to replace it)");
  }
  std::vector<std::string> texts;
  size_t bytes = 0;
  for (const auto& path : options.corpus) {
    texts.push_back(read_text_file(path));
    bytes += texts.back().size();
  }
  BpeTrainerOptions trainer;
  trainer.vocab_size = options.vocab_size;
  const nlohmann::ordered_json tokenizer_json = train_byte_level_bpe(texts, trainer);
  // Check that what we write loads and round-trips before putting it in place.
  const Tokenizer check = Tokenizer::from_json(nlohmann::json(tokenizer_json), "trained tokenizer");
  for (const auto& text : texts) {
    if (check.decode(check.encode(text)) != text) fail("trained tokenizer does not round-trip the corpus (bug)");
  }
  const nlohmann::ordered_json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                                         {"bos_token", "<|endoftext|>"},
                                         {"eos_token", "<|im_end|>"},
                                         {"pad_token", "<|endoftext|>"},
                                         {"unk_token", nullptr},
                                         {"add_bos_token", false},
                                         {"clean_up_tokenization_spaces", false},
                                         {"model_max_length", 4096},
                                         {"chat_template", kChatMlTemplate}};
  fs::create_directories(out);
  write_text_file_atomically((out / "tokenizer.json").string(), tokenizer_json.dump(1, ' ', false) + "\n");
  write_text_file_atomically((out / "tokenizer_config.json").string(), config.dump(2, ' ', false) + "\n");
  size_t tokens = 0;
  for (const auto& text : texts) tokens += check.encode(text).size();
  std::cout << "wrote " << options.out << ": vocab " << check.vocab_size() << ", corpus " << bytes << " bytes -> "
            << tokens << " tokens (" << (tokens ? static_cast<double>(bytes) / tokens : 0) << " bytes/token)\n";
}

}  // namespace

void add_train_tokenizer_command(CLI::App& app) {
  auto options = std::make_shared<TrainTokenizerOptions>();
  CLI::App* command = app.add_subcommand(
      "train-tokenizer", "Train a byte-level BPE tokenizer; writes tokenizer.json and tokenizer_config.json");
  command->add_option("--corpus", options->corpus, "text files to train on")->required()->check(CLI::ExistingFile);
  command->add_option("--vocab-size", options->vocab_size, "vocabulary size including special tokens and bytes")
      ->capture_default_str();
  command->add_option("--out", options->out, "output folder")->required();
  command->add_flag("--overwrite", options->overwrite, "replace an existing tokenizer.json");
  command->callback([options] { run_train_tokenizer(*options); });
}

}  // namespace remora
