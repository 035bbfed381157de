// `remora tokenize`: ids and pieces of a text with the model's tokenizer.json; --bench for speed.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "core/file_util.h"
#include "tokenizer/tokenizer.h"

namespace remora {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool special = false;
  bool bench = false;
  double bench_seconds = 2.0;
};

// Encodes the whole text repeatedly on this one thread; the first pass starts with an empty word
// cache, later passes show the steady state a long training run sees.
void run_bench(const Tokenizer& tokenizer, const std::string& text, double seconds) {
  using clock = std::chrono::steady_clock;
  const double megabytes = static_cast<double>(text.size()) / 1e6;
  auto start = clock::now();
  size_t tokens = tokenizer.encode(text).size();
  const double first = std::chrono::duration<double>(clock::now() - start).count();
  int passes = 0;
  start = clock::now();
  double elapsed = 0;
  while (elapsed < seconds || passes == 0) {
    tokens = tokenizer.encode(text).size();
    ++passes;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  }
  const nlohmann::ordered_json result = {{"bytes", text.size()},
                                         {"tokens", tokens},
                                         {"first_pass_mb_per_s", megabytes / first},
                                         {"steady_mb_per_s", megabytes * passes / elapsed},
                                         {"passes", passes}};
  std::cout << "encoded " << text.size() << " bytes into " << tokens << " tokens: first pass "
            << megabytes / first << " MB/s, steady " << megabytes * passes / elapsed << " MB/s (1 thread, "
            << passes << " passes)\n"
            << result.dump() << "\n";
}

void run_tokenize(const TokenizeOptions& options) {
  if (options.text.empty() == options.file.empty()) fail("tokenize: give exactly one of --text and --file");
  const Tokenizer tokenizer = Tokenizer::from_file(options.model + "/tokenizer.json");
  const std::string text = options.file.empty() ? options.text : read_text_file(options.file);
  if (options.bench) {
    run_bench(tokenizer, text, options.bench_seconds);
    return;
  }
  const auto ids = tokenizer.encode(text, options.special);
  nlohmann::json pieces = nlohmann::json::array();
  for (const int64_t id : ids) pieces.push_back(tokenizer.id_to_token(id));
  std::cout << nlohmann::json(ids).dump() << "\n"
            << pieces.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* command = app.add_subcommand(
      "tokenize", "Encode text with a model's tokenizer.json: ids as a JSON array on the first line, pieces on the second");
  command->add_option("--model", options->model, "model folder with tokenizer.json")->required();
  command->add_option("--text", options->text, "text to encode");
  command->add_option("--file", options->file, "encode this file's contents instead of --text");
  command->add_flag("--special", options->special, "add the post-processor's special tokens (e.g. BOS)");
  command->add_flag("--bench", options->bench, "report single-threaded encoding speed in MB/s instead");
  command->add_option("--bench-seconds", options->bench_seconds, "how long --bench measures")->capture_default_str();
  command->callback([options] { run_tokenize(*options); });
}

}  // namespace remora
