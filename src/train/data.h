// Training data: JSONL in the formats people have (alpaca, chat, prompt/completion, text) turned
// into token ids with a loss mask over the response tokens.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "train/recipe.h"

namespace remora {

struct PretrainedTokenizer;

struct TrainingExample {
  std::vector<int64_t> ids;
  std::vector<uint8_t> target;  // 1 where ids[t] is a token the loss predicts (from ids[t - 1])
  int64_t line = 0;             // 1-based line in the source file
  int64_t prompt_length = 0;    // tokens before the first response token (train_on_prompt or not)
};

// How many leading tokens a sequence-level router decides from: the prompt, as generation decides
// from it, so no decision depends on the response it shapes; a row without a prompt (`text` data)
// decides from its first token (the BOS where the tokenizer adds one).
int64_t routing_prefix_length(const TrainingExample& example);

// What loading did, so nothing is dropped silently.
struct DatasetReport {
  int64_t lines = 0;
  int64_t examples = 0;
  int64_t skipped_bad_lines = 0;  // malformed lines skipped under skip_bad_lines
  int64_t truncated = 0;          // examples cut to max_seq_len
  int64_t dropped_no_target = 0;  // examples left with no loss token after truncation
  int64_t target_tokens = 0;
};

struct Dataset {
  std::vector<TrainingExample> examples;
  DatasetReport report;
};

// A piece of an example's text; target pieces are what the model learns to produce.
struct TextSegment {
  std::string text;
  bool target = false;
};

// The segments of one JSONL record in `format` (kAuto: told from its fields). Throws Error without
// file or line (the caller adds them) when the record does not fit the format. With `max_tokens` >= 0
// a chat may stop after its first segments holding more than that many tokens (the rest would be
// truncated away: training's data.max_seq_len).
std::vector<TextSegment> example_segments(const nlohmann::json& line, DataFormat format,
                                          const PretrainedTokenizer& tokenizer, int64_t max_tokens = -1);

// Reads `path` line by line. A malformed line (bad JSON, unknown format, missing or non-string
// field, no chat template for chat data) is an Error naming file and line, or with
// recipe.skip_bad_lines a counted skip with a warning on stderr.
Dataset load_dataset(const std::string& path, const PretrainedTokenizer& tokenizer, const Recipe& recipe);

// Splits off round(fraction * n) examples, chosen by seed, as validation.
std::pair<Dataset, Dataset> split_validation(Dataset data, double fraction, uint64_t seed);

}  // namespace remora
