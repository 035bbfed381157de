// `remora eval`: loss/perplexity, generative exact match or multiple choice on a JSONL task file.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/common.h"
#include "core/error.h"
#include "core/file_util.h"
#include "eval/evaluate.h"
#include "eval/task_list.h"
#include "model/decoder.h"
#include "tokenizer/pretrained.h"

namespace remora {
namespace {

struct EvalCommandOptions {
  ModelOptions model;
  std::string task;
  std::string tasks_file;  // --tasks: a YAML list of tasks
  EvalOptions eval;
  std::string output;   // results JSON
  std::string samples;  // per-document JSONL
};

// lm-eval's markdown table: one row per task, metric and filter.
void print_table(const std::vector<TaskResult>& results) {
  size_t longest = 4;
  for (const auto& result : results) longest = std::max(longest, result.name.size());
  const int task_width = static_cast<int>(longest);
  std::printf("|%-*s|%-13s|%-17s|%7s|%8s|%8s|\n", task_width, "Task", "Metric", "Filter", "n", "Value", "Stderr");
  std::printf("|%s|-------------|-----------------|-------|--------|--------|\n", std::string(task_width, '-').c_str());
  for (const auto& result : results) {
    for (const auto& metric : result.metrics) {
      char error[32] = "     n/a";
      if (std::isfinite(metric.standard_error)) std::snprintf(error, sizeof(error), "%8.4f", metric.standard_error);
      std::printf("|%-*s|%-13s|%-17s|%7lld|%8.4f|%s|\n", task_width, result.name.c_str(), metric.name.c_str(),
                  metric.filter.c_str(), static_cast<long long>(result.docs), metric.value, error);
    }
  }
}

// The tasks of this run: one from --task/--data, or the --tasks list with the other flags as defaults.
std::vector<EvalOptions> tasks_of(EvalCommandOptions& options, const CLI::App& command) {
  if (options.eval.until == std::vector<std::string>{""}) options.eval.until.clear();  // --until '': no stop strings
  if (!options.tasks_file.empty()) {
    for (const char* flag : {"--task", "--data", "--name", "--fewshot", "--num-fewshot"}) {
      if (command.count(flag) > 0) fail(flag, " is set per task in the --tasks file");
    }
    return load_task_list(options.tasks_file, options.eval);
  }
  if (options.task.empty() || options.eval.data_path.empty()) fail("eval: give --task and --data, or --tasks FILE");
  options.eval.type = parse_task_type(options.task);
  for (const char* flag : {"--max-new-tokens", "--until", "--answer-regex"}) {
    if (options.eval.type != TaskType::kGenerate && command.count(flag) > 0) fail(flag, " applies to --task generate only");
  }
  if (options.eval.type != TaskType::kLoss && command.count("--format") > 0) fail("--format applies to --task loss only");
  validate(options.eval);
  return {options.eval};
}

void run_eval(EvalCommandOptions options, const CLI::App& command) {
  const std::vector<EvalOptions> tasks = tasks_of(options, command);
  std::vector<InputPath> inputs = options.model.inputs();
  inputs.push_back({options.tasks_file, "--tasks"});
  for (const auto& task : tasks) {
    inputs.push_back({task.data_path, "the data of task " + task.name});
    inputs.push_back({task.fewshot_path, "the few-shot data of task " + task.name});
  }
  for (const auto& [path, flag] : {std::pair{&options.output, "--output"}, std::pair{&options.samples, "--samples"}}) {
    if (path->empty()) continue;
    refuse_output_overlapping_inputs(*path, flag, inputs);
    require_writable_path(*path, flag);
  }
  if (!options.output.empty() && !options.samples.empty()) {
    refuse_output_overlapping_inputs(options.samples, "--samples", {{options.output, "--output"}});
  }
  auto model = options.model.load();
  const PretrainedTokenizer tokenizer = PretrainedTokenizer::load(options.model.dir);
  std::vector<TaskResult> results;
  for (const auto& task : tasks) results.push_back(evaluate_task(*model, tokenizer, task));
  print_table(results);

  if (!options.output.empty()) {
    nlohmann::ordered_json out = {{"results", nlohmann::ordered_json::object()},  // in the order the tasks ran
                                  {"configs", nlohmann::ordered_json::object()},
                          {"config", {{"model", options.model.dir},
                                      {"adapter", options.model.adapter},
                                      {"dtype", options.model.dtype}}}};
    for (size_t i = 0; i < tasks.size(); ++i) {
      out["results"][results[i].name] = metrics_json(results[i]);
      out["configs"][results[i].name] = task_config(tasks[i]);
    }
    write_text_file_atomically(options.output, out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  if (!options.samples.empty()) {
    std::string lines;
    for (const auto& result : results) {
      for (nlohmann::json sample : result.samples) {
        sample["task"] = result.name;
        lines += sample.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      }
    }
    write_text_file_atomically(options.samples, lines);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "eval", "Evaluate a model (and adapter) on a JSONL task file; prints a table, writes JSON");
  options->model.add_to(*command);
  auto& e = options->eval;
  command->add_option("--task", options->task,
                      "loss (loss and perplexity of responses), generate (exact match), choice (multiple choice)");
  command->add_option("--data", e.data_path, "JSONL documents");
  command->add_option("--tasks", options->tasks_file,
                      "YAML list of tasks (keys: the flags with '_' for '-'; other flags are their defaults)");
  command->add_option("--name", e.name, "task name in the results (default: the data file's stem)");
  command->add_option("--fewshot", e.fewshot_path, "JSONL documents to draw k-shot examples from");
  command->add_option("--num-fewshot", e.prompt.num_fewshot, "examples before each prompt")->capture_default_str();
  command->add_option("--seed", e.prompt.seed, "few-shot sampling seed")->check(seed_validator())->capture_default_str();
  command->add_option("--limit", e.limit, "evaluate only the first N documents (0 = all)")->capture_default_str();
  command->add_option("--batch-size", e.batch_size, "documents (or choices) run together")->capture_default_str();
  command->add_option("--max-new-tokens", e.max_new_tokens, "generate: most tokens per answer")->capture_default_str();
  command->add_option("--until", e.until,
                      "generate: stop strings (repeatable; replaces the GSM8K default; --until '' for none)")
      ->capture_default_str();
  command->add_option("--answer-regex", e.answer_regex,
                      "generate: also score the first match's first group of this PCRE2 pattern (custom-extract)");
  command->add_flag("--chat", e.prompt.chat, "render each prompt as a user message with the chat template");
  command->add_option("--system", e.prompt.system, "system message with --chat");
  command->add_option("--format", e.format, "loss: data format (auto, alpaca, chat, prompt_completion, text)")
      ->transform(CLI::CheckedTransformer(data_format_names(), CLI::ignore_case));
  command->add_option("--max-length", e.max_length, "loss: cut longer examples to this many tokens")
      ->capture_default_str();
  command->add_option("--output", options->output, "write the results as JSON (lm-eval's keys)");
  command->add_option("--samples", options->samples, "write one JSON line per document (outputs, scores)");
  command->callback([options, command] { run_eval(*options, *command); });
}

}  // namespace remora
