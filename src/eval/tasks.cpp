// Task documents and prompt construction.
#include "eval/tasks.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/json_input.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "eval/scoring.h"
#include "tokenizer/pretrained.h"
#include "train/data.h"

namespace remora {
namespace {

std::string question_context(const nlohmann::json& line) {
  return "Question: " + string_field(line, "question") + "\nAnswer:";
}

EvalDoc choice_doc(const nlohmann::json& line) {
  EvalDoc doc;
  doc.context = question_context(line);
  doc.delimiter = " ";
  const auto it = line.find("choices");
  if (it == line.end()) fail("missing field 'choices'");
  std::vector<std::string> labels;
  if (it->is_object()) {  // ARC: {"text": [...], "label": [...]}
    if (!it->contains("text") || !it->contains("label")) fail("'choices' must have 'text' and 'label' lists");
    for (const auto& text : it->at("text")) {
      if (!text.is_string()) fail("choices.text must hold strings");
      doc.choices.push_back(text.get<std::string>());
    }
    for (const auto& label : it->at("label")) {
      if (!label.is_string()) fail("choices.label must hold strings");
      labels.push_back(label.get<std::string>());
    }
    if (labels.size() != doc.choices.size()) fail("choices.text and choices.label differ in length");
  } else if (it->is_array()) {
    if (it->size() > 26) fail("a list of choices is labelled A to Z: at most 26, got ", it->size());
    for (const auto& text : *it) {
      if (!text.is_string()) fail("'choices' must hold strings");
      labels.push_back(std::string(1, static_cast<char>('A' + labels.size())));
      doc.choices.push_back(text.get<std::string>());
    }
  } else {
    fail("'choices' must be a list or an object with 'text' and 'label'");
  }
  if (doc.choices.size() < 2) fail("a multiple-choice document needs at least 2 choices");
  for (size_t i = 0; i < labels.size(); ++i) {
    if (std::find(labels.begin(), labels.begin() + i, labels[i]) != labels.begin() + i) {
      fail("choice label '", labels[i], "' appears twice");
    }
  }
  if (line.contains("answerKey")) {
    doc.gold = static_cast<int64_t>(choice_label_index(labels, string_field(line, "answerKey")));
  } else if (line.contains("gold")) {
    if (!line["gold"].is_number_integer()) fail("'gold' must be an integer choice index, got ", describe(line["gold"]));
    doc.gold = line["gold"].get<int64_t>();
    if (doc.gold < 0 || doc.gold >= static_cast<int64_t>(doc.choices.size())) {
      fail("gold ", doc.gold, " is not a choice index (0..", doc.choices.size() - 1, ")");
    }
  } else {
    fail("missing 'answerKey' (a choice label) or 'gold' (a choice index)");
  }
  doc.reference = doc.choices[doc.gold];
  return doc;
}

EvalDoc generate_doc(const nlohmann::json& line, const PretrainedTokenizer& tokenizer) {
  EvalDoc doc;
  if (line.contains("question")) {
    if (!line.contains("answer")) fail("a question document needs its 'answer' (the reference, GSM8K-style)");
    doc.context = question_context(line);
    doc.delimiter = " ";
    doc.reference = string_field(line, "answer");
    return doc;
  }
  // A training record: the prompt is everything before its last response.
  if (!line.contains("messages") && !(line.contains("instruction") && line.contains("output")) &&
      !(line.contains("prompt") && line.contains("completion"))) {
    fail("expected 'question'+'answer' (GSM8K-style) or a training record with a response: 'instruction'+'output', "
         "'prompt'+'completion' or 'messages'");
  }
  const auto segments = example_segments(line, DataFormat::kAuto, tokenizer);
  size_t last = segments.size();
  while (last > 0 && !segments[last - 1].target) --last;
  for (size_t i = 0; i + 1 < last; ++i) doc.context += segments[i].text;
  if (last == 0 || doc.context.empty()) fail("the record has no prompt before its response");
  doc.templated = line.contains("messages");
  if (doc.templated) {
    // The rendered response carries the template's end-of-turn: the reference is the message alone.
    for (const auto& message : line["messages"]) {
      if (message.value("role", "") == "assistant") doc.reference = message.value("content", "");
    }
  } else {
    doc.reference = segments[last - 1].text;
  }
  return doc;
}

}  // namespace

TaskType parse_task_type(const std::string& text) {
  if (text == "loss") return TaskType::kLoss;
  if (text == "generate") return TaskType::kGenerate;
  if (text == "choice") return TaskType::kChoice;
  fail("--task: expected loss, generate or choice, got '", text, "'");
}

const char* task_type_name(TaskType type) {
  switch (type) {
    case TaskType::kLoss: return "loss";
    case TaskType::kGenerate: return "generate";
    case TaskType::kChoice: return "choice";
  }
  return "?";
}

std::vector<EvalDoc> load_eval_docs(const std::string& path, TaskType type, const PretrainedTokenizer& tokenizer,
                                    int64_t limit) {
  REMORA_CHECK(type != TaskType::kLoss, "load_eval_docs: loss tasks read training data");
  require_regular_file(path, "task file");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open the task file");
  std::vector<EvalDoc> docs;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (limit > 0 && static_cast<int64_t>(docs.size()) >= limit) break;
    if (is_blank_line(text)) continue;
    try {
      const nlohmann::json line = parse_jsonl_object(text);
      EvalDoc doc = type == TaskType::kChoice ? choice_doc(line) : generate_doc(line, tokenizer);
      doc.source = path;
      doc.line = number;
      docs.push_back(std::move(doc));
    } catch (const Error& e) {
      fail(path, ":", number, ": ", e.what());
    }
  }
  if (docs.empty()) fail(path, ": no documents");
  return docs;
}

std::vector<Prompt> build_prompts(const std::vector<EvalDoc>& docs, const std::vector<EvalDoc>& fewshot,
                                  const PromptOptions& options, const PretrainedTokenizer& tokenizer) {
  if (options.num_fewshot > 0) {
    if (fewshot.size() < static_cast<size_t>(options.num_fewshot)) {
      fail("--num-fewshot ", options.num_fewshot, ": the --fewshot file has only ", fewshot.size(), " documents");
    }
    // Shots and the documents they precede are joined as plain text: no chat-rendered rows.
    for (const auto* list : {&docs, &fewshot}) {
      for (const auto& doc : *list) {
        if (doc.templated) {
          fail(doc.source, ":", doc.line, ": few-shot prompts need question/answer, alpaca or prompt/completion rows, not chat");
        }
      }
    }
  }
  if (options.chat && !tokenizer.chat_template) fail("--chat: the model folder has no chat template");
  std::mt19937_64 rng(options.seed);
  std::vector<Prompt> prompts;
  for (const auto& doc : docs) {
    std::string text;
    // Shots are drawn one at a time without replacement, skipping the document itself.
    std::vector<size_t> pool(fewshot.size());
    for (size_t i = 0; i < pool.size(); ++i) pool[i] = i;
    for (int64_t shot = 0; shot < options.num_fewshot;) {
      if (pool.empty()) {
        fail("--fewshot: fewer than ", options.num_fewshot, " documents differ from ", doc.source, ":", doc.line);
      }
      const size_t pick = std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng);
      const EvalDoc& example = fewshot[pool[pick]];
      pool.erase(pool.begin() + pick);
      if (example.context == doc.context) continue;
      text += example.context + example.delimiter + example.reference + "\n\n";
      ++shot;
    }
    text += doc.context;
    Prompt prompt{text, doc.templated};
    if (options.chat && !doc.templated) {
      nlohmann::ordered_json messages = nlohmann::ordered_json::array();
      if (!options.system.empty()) messages.push_back({{"role", "system"}, {"content", options.system}});
      messages.push_back({{"role", "user"}, {"content", text}});
      prompt = {tokenizer.apply_chat_template(messages, /*add_generation_prompt=*/true), true};
    }
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

std::vector<int64_t> encode_prompt(const Prompt& prompt, const PretrainedTokenizer& tokenizer,
                                   const std::string& continuation) {
  return tokenizer.tokenizer.encode(prompt.text + continuation, /*add_special_tokens=*/!prompt.templated);
}

}  // namespace remora
