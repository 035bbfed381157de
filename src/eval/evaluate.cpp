// The three task runners and lm-eval-style result keys.
#include "eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "eval/loglikelihood.h"
#include "eval/scoring.h"
#include "eval/text_generation.h"
#include "model/decoder.h"
#include "tokenizer/pretrained.h"
#include "train/data.h"

namespace remora {
namespace {

// "eval NAME: 120/1319 documents, 35 s, about 350 s left" on stderr, at most every 10 s and at the end.
class EvalProgress {
 public:
  EvalProgress(std::string name, std::string unit) : name_(std::move(name)), unit_(std::move(unit)) {}
  void operator()(size_t done, size_t total) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    if (done < total && elapsed - last_ < 10) return;
    last_ = elapsed;
    std::cerr << "eval " << name_ << ": " << done << "/" << total << " " << unit_ << ", " << static_cast<int64_t>(elapsed)
              << " s";
    if (done < total) std::cerr << ", about " << static_cast<int64_t>(elapsed / done * (total - done)) << " s left";
    std::cerr << "\n";
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string name_, unit_;
  Clock::time_point start_ = Clock::now();
  double last_ = 0;
};

Metric mean_metric(const std::string& name, const std::string& filter, const std::vector<double>& values) {
  const MeanStderr summary = mean_and_stderr(values);
  return {name, filter, summary.mean, summary.std_error};
}

// Rows longer than the model was trained for are still run (RoPE extrapolates) but said, as lm-eval
// would silently cut them from the left instead.
void warn_if_longer_than_model(const CausalLM& model, const std::vector<size_t>& lengths, const char* what) {
  const int64_t limit = model.config().max_position_embeddings;
  const auto longer = std::count_if(lengths.begin(), lengths.end(), [&](size_t n) { return static_cast<int64_t>(n) > limit; });
  if (longer > 0) {
    std::cerr << "warning: " << longer << " " << what << " longer than the model's max_position_embeddings " << limit << "\n";
  }
}

std::vector<EvalDoc> fewshot_docs(const EvalOptions& options, const PretrainedTokenizer& tokenizer) {
  if (options.prompt.num_fewshot == 0) return {};
  return load_eval_docs(options.fewshot_path, options.type, tokenizer);
}

TaskResult loss_task(CausalLM& model, const PretrainedTokenizer& tokenizer, const EvalOptions& options) {
  Recipe reading;  // the training data reader, with evaluation's length limit
  reading.format = options.format;
  // Nothing longer than the model's context is run (as lm-eval caps at the model's max_length).
  reading.max_seq_len = std::min(options.max_length, model.config().max_position_embeddings);
  Dataset data = load_dataset(options.data_path, tokenizer, reading);
  if (options.limit > 0 && static_cast<int64_t>(data.examples.size()) > options.limit) {
    data.examples.resize(options.limit);
  }
  if (data.report.truncated > 0) {
    std::cerr << "warning: " << data.report.truncated << " examples cut to " << reading.max_seq_len
              << " tokens (--max-length and the model's context)\n";
  }
  if (data.report.dropped_no_target > 0) {
    std::cerr << "warning: " << data.report.dropped_no_target << " examples have no response token and are not scored\n";
  }
  const auto scores = score_targets(model, data.examples, options.batch_size, EvalProgress(options.name, "examples"));
  TaskResult result;
  double total = 0, text_total = 0;  // text_total leaves out special tokens (EOS), which have no bytes
  int64_t tokens = 0, bytes = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const TrainingExample& example = data.examples[i];
    std::vector<int64_t> target_ids;
    for (size_t t = 1; t < example.ids.size(); ++t) {
      if (example.target[t]) target_ids.push_back(example.ids[t]);
    }
    for (size_t j = 0; j < target_ids.size(); ++j) {
      if (!tokenizer.tokenizer.is_special(target_ids[j])) text_total -= scores[i].token_log_likelihoods[j];
    }
    const int64_t text_bytes = tokenizer.tokenizer.decode(target_ids, /*skip_special_tokens=*/true).size();
    total -= scores[i].log_likelihood;
    tokens += scores[i].tokens;
    bytes += text_bytes;
    result.samples.push_back({{"line", example.line}, {"loss_sum", -scores[i].log_likelihood},
                              {"tokens", scores[i].tokens}, {"bytes", text_bytes}, {"greedy", scores[i].greedy}});
  }
  // Token-weighted, as training reports it: the mean over every response token of the file. Bits
  // per byte of the response text (special tokens left out) compares models whose tokenizers differ
  // (lm-eval's bits_per_byte).
  const double loss = total / std::max<int64_t>(tokens, 1);
  const double nan = std::nan("");
  result.docs = static_cast<int64_t>(scores.size());
  result.metrics = {{"loss", "none", loss, nan},
                    {"perplexity", "none", std::exp(loss), nan},
                    {"bits_per_byte", "none", text_total / std::log(2.0) / std::max<int64_t>(bytes, 1), nan}};
  return result;
}

TaskResult generate_task(CausalLM& model, const PretrainedTokenizer& tokenizer, const EvalOptions& options) {
  const auto docs = load_eval_docs(options.data_path, TaskType::kGenerate, tokenizer, options.limit);
  const auto prompts = build_prompts(docs, fewshot_docs(options, tokenizer), options.prompt, tokenizer);
  std::vector<std::vector<int64_t>> ids;
  std::vector<size_t> lengths;
  for (const auto& prompt : prompts) {
    ids.push_back(encode_prompt(prompt, tokenizer));
    lengths.push_back(ids.back().size() + options.max_new_tokens);
  }
  warn_if_longer_than_model(model, lengths, "prompts (with --max-new-tokens) are");

  std::optional<AnswerExtractor> custom;  // compiled first: a bad pattern must not cost the generation
  if (!options.answer_regex.empty()) custom.emplace(options.answer_regex, MatchTake::kFirst, "--answer-regex");

  TextGenerationOptions generation;
  generation.generation.max_new_tokens = options.max_new_tokens;  // greedy, as lm-eval's GSM8K
  generation.generation.eos_token_ids = model.config().eos_token_ids;
  generation.stop_strings = options.until;
  generation.batch_size = options.batch_size;
  const auto outputs = generate_texts(model, tokenizer.tokenizer, ids, generation, {},
                                      EvalProgress(options.name, "documents"));

  std::vector<double> whole, strict_hits, flexible_hits, custom_hits;
  TaskResult result;
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string& output = outputs[i];
    const std::string gold = gold_answer(docs[i].reference);
    const std::string strict = strict_match(output), flexible = flexible_extract(output);
    whole.push_back(exact_match(output, gold));
    strict_hits.push_back(exact_match(strict, gold));
    flexible_hits.push_back(exact_match(flexible, gold));
    nlohmann::json filtered = {{"strict-match", strict}, {"flexible-extract", flexible}};
    nlohmann::json hits = {{"none", whole.back()}, {"strict-match", strict_hits.back()},
                           {"flexible-extract", flexible_hits.back()}};
    if (custom) {
      filtered["custom-extract"] = custom->extract(output);
      custom_hits.push_back(exact_match(filtered["custom-extract"].get<std::string>(), gold));
      hits["custom-extract"] = custom_hits.back();
    }
    result.samples.push_back({{"line", docs[i].line}, {"prompt", prompts[i].text}, {"output", output},
                              {"reference", docs[i].reference}, {"gold", gold}, {"filtered", filtered},
                              {"exact_match", hits}});
  }
  result.docs = static_cast<int64_t>(docs.size());
  result.metrics = {mean_metric("exact_match", "strict-match", strict_hits),
                    mean_metric("exact_match", "flexible-extract", flexible_hits),
                    mean_metric("exact_match", "none", whole)};
  if (custom) result.metrics.push_back(mean_metric("exact_match", "custom-extract", custom_hits));
  return result;
}

TaskResult choice_task(CausalLM& model, const PretrainedTokenizer& tokenizer, const EvalOptions& options) {
  const auto docs = load_eval_docs(options.data_path, TaskType::kChoice, tokenizer, options.limit);
  const auto prompts = build_prompts(docs, fewshot_docs(options, tokenizer), options.prompt, tokenizer);
  // One scored row per (document, choice): the choice's tokens are those after the context's, the
  // way lm-eval splits an encoding of the whole string.
  std::vector<TrainingExample> rows;
  for (size_t i = 0; i < docs.size(); ++i) {
    const size_t context_tokens = encode_prompt(prompts[i], tokenizer).size();
    // After a chat template's assistant header the choice follows directly, as lm-eval does.
    const std::string delimiter = prompts[i].templated ? "" : docs[i].delimiter;
    for (const auto& choice : docs[i].choices) {
      TrainingExample row;
      row.line = docs[i].line;
      row.ids = encode_prompt(prompts[i], tokenizer, delimiter + choice);
      if (row.ids.size() <= context_tokens) fail(options.data_path, ":", docs[i].line, ": choice '", choice, "' encodes to no tokens");
      row.target.assign(row.ids.size(), 0);
      row.prompt_length = static_cast<int64_t>(context_tokens);
      std::fill(row.target.begin() + context_tokens, row.target.end(), 1);
      rows.push_back(std::move(row));
    }
  }
  // Sequence-level routers decide from the question, as they would before answering.
  std::vector<size_t> lengths;
  for (const auto& row : rows) lengths.push_back(row.ids.size());
  warn_if_longer_than_model(model, lengths, "prompt + choice rows are");
  const auto scores = score_targets(model, rows, options.batch_size, EvalProgress(options.name, "choices"));
  std::vector<double> acc, acc_norm;
  TaskResult result;
  size_t next = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    const EvalDoc& doc = docs[d];
    std::vector<double> lls;
    for (size_t c = 0; c < doc.choices.size(); ++c) lls.push_back(scores[next++].log_likelihood);
    const ChoicePrediction prediction = score_choices(lls, doc.choices);
    acc.push_back(static_cast<int64_t>(prediction.predicted) == doc.gold);
    acc_norm.push_back(static_cast<int64_t>(prediction.predicted_norm) == doc.gold);
    result.samples.push_back({{"line", doc.line}, {"prompt", prompts[d].text}, {"choices", doc.choices},
                              {"loglikelihoods", lls}, {"gold", doc.gold},
                              {"predicted", prediction.predicted}, {"predicted_norm", prediction.predicted_norm},
                              {"acc", acc.back()}, {"acc_norm", acc_norm.back()}});
  }
  result.docs = static_cast<int64_t>(docs.size());
  result.metrics = {mean_metric("acc", "none", acc), mean_metric("acc_norm", "none", acc_norm)};
  return result;
}

}  // namespace

void validate(const EvalOptions& options) {
  if (options.batch_size < 1) fail("--batch-size must be >= 1, got ", options.batch_size);
  if (options.limit < 0) fail("--limit must be >= 0 (0 = all), got ", options.limit);
  if (options.prompt.num_fewshot < 0) fail("--num-fewshot must be >= 0, got ", options.prompt.num_fewshot);
  if (options.prompt.num_fewshot > 0 && options.fewshot_path.empty()) {
    fail("--num-fewshot needs --fewshot FILE (the documents to draw examples from)");
  }
  if (options.prompt.num_fewshot == 0 && !options.fewshot_path.empty()) fail("--fewshot needs --num-fewshot K > 0");
  if (!options.prompt.system.empty() && !options.prompt.chat) fail("--system needs --chat");
  if (options.type == TaskType::kLoss && (options.prompt.num_fewshot > 0 || options.prompt.chat)) {
    fail("--task loss scores the data file's own format: --num-fewshot and --chat do not apply");
  }
  if (options.max_new_tokens < 1) fail("--max-new-tokens must be >= 1, got ", options.max_new_tokens);
  if (options.max_length < 2) fail("--max-length must be >= 2, got ", options.max_length);
  for (const auto& stop : options.until) {
    if (stop.empty()) fail("--until: an empty stop string (give --until '' alone for none)");
  }
  if (!options.answer_regex.empty()) AnswerExtractor(options.answer_regex, MatchTake::kFirst, "--answer-regex");
}

TaskResult evaluate_task(CausalLM& model, const PretrainedTokenizer& tokenizer, const EvalOptions& given) {
  validate(given);
  EvalOptions options = given;
  if (options.name.empty()) options.name = std::filesystem::path(options.data_path).stem().string();
  TaskResult result;
  switch (options.type) {
    case TaskType::kLoss: result = loss_task(model, tokenizer, options); break;
    case TaskType::kGenerate: result = generate_task(model, tokenizer, options); break;
    case TaskType::kChoice: result = choice_task(model, tokenizer, options); break;
  }
  result.type = options.type;
  result.name = options.name;
  return result;
}

nlohmann::json metrics_json(const TaskResult& result) {
  nlohmann::json out = {{"task", task_type_name(result.type)}, {"docs", result.docs}};
  for (const auto& metric : result.metrics) {
    out[metric.name + "," + metric.filter] = metric.value;
    out[metric.name + "_stderr," + metric.filter] =
        std::isfinite(metric.standard_error) ? nlohmann::json(metric.standard_error) : nlohmann::json(nullptr);
  }
  return out;
}

nlohmann::json task_config(const EvalOptions& options) {
  nlohmann::json config = {{"task", task_type_name(options.type)},
                           {"data", options.data_path},
                           {"fewshot", options.fewshot_path},
                           {"num_fewshot", options.prompt.num_fewshot},
                           {"seed", options.prompt.seed},
                           {"limit", options.limit},
                           {"batch_size", options.batch_size},
                           {"chat", options.prompt.chat},
                           {"system", options.prompt.system}};
  if (options.type == TaskType::kLoss) config["max_length"] = options.max_length;
  if (options.type == TaskType::kGenerate) {
    config["max_new_tokens"] = options.max_new_tokens;
    config["until"] = options.until;
    config["answer_regex"] = options.answer_regex;
  }
  return config;
}

}  // namespace remora
