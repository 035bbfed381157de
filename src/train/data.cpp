// JSONL formats -> prompt/response segments -> token ids and loss masks.
#include "train/data.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "core/random.h"
#include "tokenizer/pretrained.h"

namespace remora {
namespace {

DataFormat detect(const nlohmann::json& line) {
  if (line.contains("messages")) return DataFormat::kChat;
  if (line.contains("instruction") && line.contains("output")) return DataFormat::kAlpaca;
  if (line.contains("prompt") && line.contains("completion")) return DataFormat::kPromptCompletion;
  if (line.contains("text")) return DataFormat::kText;
  fail("cannot tell the format: expected 'messages', 'instruction'+'output', 'prompt'+'completion' or 'text'");
}

// The Alpaca prompt (Taori et al. 2023), without its preamble.
std::vector<TextSegment> alpaca(const nlohmann::json& line) {
  std::string prompt = "### Instruction:\n" + string_field(line, "instruction") + "\n\n";
  if (line.contains("input") && !string_field(line, "input").empty()) {
    prompt += "### Input:\n" + string_field(line, "input") + "\n\n";
  }
  return {{prompt + "### Response:\n", false}, {string_field(line, "output"), true}};
}

// Renders the chat template incrementally: each assistant message's text is what the full
// conversation adds over the conversation up to it with a generation prompt. Each step renders the
// whole prefix, so a long conversation costs messages² renders: with `max_tokens` >= 0 it stops once
// its segments hold more tokens than that (what follows would be cut by data.max_seq_len anyway;
// segments are tokenized one by one, so the kept ones are unchanged).
std::vector<TextSegment> chat(const nlohmann::json& line, const PretrainedTokenizer& tokenizer, int64_t max_tokens) {
  const auto it = line.find("messages");
  if (it == line.end()) fail("missing field 'messages'");  // data.format: chat forced on other data
  if (!it->is_array() || it->empty()) fail("'messages' must be a non-empty list");
  for (size_t i = 0; i < it->size(); ++i) {  // every message is checked, rendered or not
    const auto& message = (*it)[i];
    if (!message.is_object()) fail("messages[", i, "] must be an object with role and content");
    string_field(message, "role");  // each throws naming the field when it is missing or not a string
    string_field(message, "content");
  }
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::vector<TextSegment> segments;
  std::string rendered;
  int64_t tokens = 0;
  const auto add = [&](std::string text, bool target) {
    if (max_tokens >= 0) tokens += static_cast<int64_t>(tokenizer.tokenizer.encode(text, false).size());
    segments.push_back({std::move(text), target});
  };
  for (size_t i = 0; i < it->size() && (max_tokens < 0 || tokens <= max_tokens); ++i) {
    const auto& message = (*it)[i];
    const std::string role = string_field(message, "role"), content = string_field(message, "content");
    const bool assistant = role == "assistant";
    if (assistant) {
      const std::string prompt = tokenizer.apply_chat_template(messages, /*add_generation_prompt=*/true);
      if (prompt.compare(0, rendered.size(), rendered) != 0) fail("the chat template does not render incrementally");
      add(prompt.substr(rendered.size()), false);
      rendered = prompt;
    }
    messages.push_back({{"role", role}, {"content", content}});
    const std::string full = tokenizer.apply_chat_template(messages, /*add_generation_prompt=*/false);
    if (full.compare(0, rendered.size(), rendered) != 0) fail("the chat template does not render incrementally");
    add(full.substr(rendered.size()), assistant);
    rendered = full;
  }
  return segments;
}

}  // namespace

std::vector<TextSegment> example_segments(const nlohmann::json& line, DataFormat format,
                                          const PretrainedTokenizer& tokenizer, int64_t max_tokens) {
  if (!line.is_object()) fail("a line must be a JSON object");
  switch (format == DataFormat::kAuto ? detect(line) : format) {
    case DataFormat::kAlpaca: return alpaca(line);
    case DataFormat::kChat: return chat(line, tokenizer, max_tokens);
    case DataFormat::kPromptCompletion:
      return {{string_field(line, "prompt"), false}, {string_field(line, "completion"), true}};
    case DataFormat::kText: return {{string_field(line, "text"), true}};
    case DataFormat::kAuto: break;
  }
  fail("unknown data format");
}

int64_t routing_prefix_length(const TrainingExample& example) {
  return std::min<int64_t>(std::max<int64_t>(example.prompt_length, 1), static_cast<int64_t>(example.ids.size()));
}

Dataset load_dataset(const std::string& path, const PretrainedTokenizer& tokenizer, const Recipe& recipe) {
  require_regular_file(path, "data file");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open the data file");
  const auto eos = tokenizer.eos_token.empty() ? std::nullopt : tokenizer.tokenizer.token_to_id(tokenizer.eos_token);
  Dataset data;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    data.report.lines++;
    if (is_blank_line(text)) continue;
    TrainingExample example;
    example.line = number;
    try {
      const nlohmann::json line = parse_jsonl_object(text);
      const DataFormat format = recipe.format == DataFormat::kAuto ? detect(line) : recipe.format;
      const std::vector<TextSegment> segments = example_segments(line, format, tokenizer, recipe.max_seq_len);
      // Chat templates write BOS themselves; the other formats get the post-processor's tokens.
      bool first = format != DataFormat::kChat;
      bool in_prompt = true;
      for (const auto& segment : segments) {
        const auto ids = tokenizer.tokenizer.encode(segment.text, first);
        first = false;
        in_prompt = in_prompt && !segment.target;
        if (in_prompt) example.prompt_length += static_cast<int64_t>(ids.size());
        example.ids.insert(example.ids.end(), ids.begin(), ids.end());
        example.target.insert(example.target.end(), ids.size(), segment.target || recipe.train_on_prompt);
      }
      if (format != DataFormat::kChat && eos) {
        example.ids.push_back(*eos);  // so the model learns to stop
        example.target.push_back(1);
      }
    } catch (const Error& e) {
      if (!recipe.skip_bad_lines) fail(path, ":", number, ": ", e.what());
      data.report.skipped_bad_lines++;
      std::cerr << "warning: " << path << ":" << number << ": skipped: " << e.what() << "\n";
      continue;
    }
    if (static_cast<int64_t>(example.ids.size()) > recipe.max_seq_len) {
      example.ids.resize(recipe.max_seq_len);
      example.target.resize(recipe.max_seq_len);
      example.prompt_length = std::min(example.prompt_length, recipe.max_seq_len);
      data.report.truncated++;
    }
    if (!example.target.empty()) example.target[0] = 0;  // nothing predicts the first token
    int64_t targets = 0;
    for (uint8_t t : example.target) targets += t;
    if (targets == 0) {
      data.report.dropped_no_target++;
      continue;
    }
    data.report.target_tokens += targets;
    data.examples.push_back(std::move(example));
  }
  data.report.examples = static_cast<int64_t>(data.examples.size());
  if (data.examples.empty()) fail(path, ": no usable examples (", data.report.lines, " lines)");
  return data;
}

std::pair<Dataset, Dataset> split_validation(Dataset data, double fraction, uint64_t seed) {
  const auto order = shuffled_indices(data.examples.size(), seed ^ 0x5eed);
  const size_t held = static_cast<size_t>(fraction * data.examples.size() + 0.5);
  Dataset train, validation;
  for (size_t i = 0; i < order.size(); ++i) {
    (i < held ? validation : train).examples.push_back(std::move(data.examples[order[i]]));
  }
  train.report = data.report;
  train.report.examples = static_cast<int64_t>(train.examples.size());
  validation.report.examples = static_cast<int64_t>(validation.examples.size());
  return {std::move(train), std::move(validation)};
}

}  // namespace remora
