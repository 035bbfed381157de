// Task list YAML -> one EvalOptions per task.
#include "eval/task_list.h"

#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "core/json_input.h"
#include "core/error.h"
#include "core/yaml_json.h"

namespace remora {
namespace {

std::string string_value(const nlohmann::json& value, const std::string& where) {
  if (!value.is_string()) fail(where, ": expected a string, got ", describe(value));
  return value.get<std::string>();
}

int64_t integer_value(const nlohmann::json& value, const std::string& where) {
  if (!value.is_number_integer()) fail(where, ": expected an integer, got ", describe(value));
  return value.get<int64_t>();
}

// A setter per key, and the task types that read it (none listed: every type).
struct Key {
  std::function<void(EvalOptions&, const nlohmann::json&, const std::string&)> set;
  std::set<TaskType> only;
};

const std::map<std::string, Key>& keys() {
  using O = EvalOptions;
  using J = nlohmann::json;
  using S = std::string;
  static const std::map<std::string, Key> table = {
      {"name", {[](O& o, const J& v, const S& w) { o.name = string_value(v, w); }, {}}},
      {"data", {[](O& o, const J& v, const S& w) { o.data_path = string_value(v, w); }, {}}},
      {"fewshot", {[](O& o, const J& v, const S& w) { o.fewshot_path = string_value(v, w); }, {}}},
      {"num_fewshot", {[](O& o, const J& v, const S& w) { o.prompt.num_fewshot = integer_value(v, w); }, {}}},
      {"seed", {[](O& o, const J& v, const S& w) { o.prompt.seed = integer_value(v, w); }, {}}},
      {"limit", {[](O& o, const J& v, const S& w) { o.limit = integer_value(v, w); }, {}}},
      {"batch_size", {[](O& o, const J& v, const S& w) { o.batch_size = integer_value(v, w); }, {}}},
      {"chat",
       {[](O& o, const J& v, const S& w) {
          if (!v.is_boolean()) fail(w, ": expected true or false, got ", describe(v));
          o.prompt.chat = v.get<bool>();
        },
        {TaskType::kGenerate, TaskType::kChoice}}},
      {"system", {[](O& o, const J& v, const S& w) { o.prompt.system = string_value(v, w); },
                  {TaskType::kGenerate, TaskType::kChoice}}},
      {"max_new_tokens", {[](O& o, const J& v, const S& w) { o.max_new_tokens = integer_value(v, w); },
                          {TaskType::kGenerate}}},
      {"until",
       {[](O& o, const J& v, const S& w) {
          if (!v.is_array()) fail(w, ": expected a list of strings");
          o.until.clear();
          for (const auto& item : v) o.until.push_back(string_value(item, w));
        },
        {TaskType::kGenerate}}},
      {"answer_regex", {[](O& o, const J& v, const S& w) { o.answer_regex = string_value(v, w); },
                        {TaskType::kGenerate}}},
      {"format",
       {[](O& o, const J& v, const S& w) {
          const auto it = data_format_names().find(string_value(v, w));
          if (it == data_format_names().end()) fail(w, ": expected auto, alpaca, chat, prompt_completion or text");
          o.format = it->second;
        },
        {TaskType::kLoss}}},
      {"max_length", {[](O& o, const J& v, const S& w) { o.max_length = integer_value(v, w); }, {TaskType::kLoss}}},
  };
  return table;
}

}  // namespace

std::vector<EvalOptions> load_task_list(const std::string& path, const EvalOptions& defaults) {
  const nlohmann::json document = read_yaml_file(path);
  const nlohmann::json& entries = document.is_object() && document.contains("tasks") ? document["tasks"] : document;
  if (!entries.is_array() || entries.empty()) fail(path, ": expected a non-empty list of tasks (under 'tasks:')");
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  const auto resolve = [&](std::string& file) {
    if (!file.empty() && std::filesystem::path(file).is_relative()) file = (folder / file).lexically_normal().string();
  };

  std::vector<EvalOptions> tasks;
  std::set<std::string> names;
  for (size_t i = 0; i < entries.size(); ++i) {
    const nlohmann::json& entry = entries[i];
    const std::string where = path + ": tasks[" + std::to_string(i) + "]";
    if (!entry.is_object()) fail(where, ": expected a map of task keys");
    if (!entry.contains("task") || !entry.contains("data")) fail(where, ": needs 'task' and 'data'");
    EvalOptions task = defaults;
    task.type = parse_task_type(string_value(entry["task"], where + ".task"));
    for (const auto& [key, value] : entry.items()) {
      if (key == "task") continue;
      const auto it = keys().find(key);
      if (it == keys().end()) fail(where, ": unknown key '", key, "' (the eval flags, with '_' for '-')");
      if (!it->second.only.empty() && !it->second.only.count(task.type)) {
        fail(where, ".", key, ": does not apply to a ", task_type_name(task.type), " task");
      }
      it->second.set(task, value, where + "." + key);
    }
    resolve(task.data_path);
    resolve(task.fewshot_path);
    if (task.name.empty()) task.name = std::filesystem::path(task.data_path).stem().string();
    if (!names.insert(task.name).second) fail(where, ": a second task named '", task.name, "' (set 'name')");
    try {
      validate(task);
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
    tasks.push_back(std::move(task));
  }
  return tasks;
}

}  // namespace remora
