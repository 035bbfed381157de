// Loading a model folder's tokenizer files and rendering its chat template.
#include "tokenizer/pretrained.h"

#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"
#include "tokenizer/jinja/template.h"

namespace remora {
namespace {
namespace fs = std::filesystem;

// bos_token etc. are a string, an AddedToken-like {"content": ...}, or null.
std::string token_text(const nlohmann::json& config, const char* key, const std::string& where) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return it->at("content").get<std::string>();
  fail(where, ": field '", key, "' must be a string, {\"content\": ...} or null");
}

}  // namespace

PretrainedTokenizer PretrainedTokenizer::load(const std::string& dir) {
  const fs::path root(dir);
  const std::string tokenizer_path = (root / "tokenizer.json").string();
  if (!path_exists(tokenizer_path)) fail(dir, ": no tokenizer.json (text options need the model's tokenizer)");
  PretrainedTokenizer result{Tokenizer::from_file(tokenizer_path), "", "", std::nullopt, ""};

  const fs::path config_path = root / "tokenizer_config.json";
  if (path_exists(config_path)) {
    const std::string where = config_path.string();
    const auto config = read_json_file(where);
    if (!config.is_object()) fail(where, ": not a JSON object");
    result.bos_token = token_text(config, "bos_token", where);
    result.eos_token = token_text(config, "eos_token", where);
    if (config.contains("chat_template") && !config.at("chat_template").is_null()) {
      const auto& chat = config.at("chat_template");
      if (chat.is_string()) {
        result.chat_template = chat.get<std::string>();
      } else if (chat.is_array()) {
        // Several named templates: the one called "default" is used for chat.
        for (const auto& entry : chat) {
          if (entry.value("name", "") == "default") result.chat_template = entry.at("template").get<std::string>();
        }
        if (!result.chat_template) fail(where, ": chat_template list has no entry named 'default'");
      } else {
        fail(where, ": chat_template must be a string or a list of {name, template}");
      }
      result.chat_template_source = where + ": chat_template";
    }
  }
  const fs::path jinja_path = root / "chat_template.jinja";
  if (path_exists(jinja_path)) {
    result.chat_template = read_text_file(jinja_path.string());
    result.chat_template_source = jinja_path.string();
  }
  return result;
}

std::string PretrainedTokenizer::apply_chat_template(const nlohmann::ordered_json& messages,
                                                     bool add_generation_prompt,
                                                     const nlohmann::ordered_json& extra) const {
  if (!chat_template) fail("this model's tokenizer has no chat template (tokenizer_config.json or chat_template.jinja)");
  const jinja::Template compiled(*chat_template, chat_template_source);
  jinja::Object variables{{"messages", jinja::Value::from_json(messages)},
                          {"add_generation_prompt", jinja::Value(add_generation_prompt)},
                          {"bos_token", jinja::Value(bos_token)},
                          {"eos_token", jinja::Value(eos_token)}};
  for (const auto& [key, value] : extra.items()) variables.emplace_back(key, jinja::Value::from_json(value));
  return compiled.render(variables);
}

}  // namespace remora
