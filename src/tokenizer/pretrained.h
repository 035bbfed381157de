// A model folder's tokenizer: tokenizer.json plus tokenizer_config.json (bos/eos tokens, chat
// template) and chat_template.jinja, which overrides the config's template as in transformers.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "tokenizer/tokenizer.h"

namespace remora {

struct PretrainedTokenizer {
  Tokenizer tokenizer;
  std::string bos_token, eos_token;  // "" when the config names none
  std::optional<std::string> chat_template;
  std::string chat_template_source;  // file the template came from, for errors

  // Reads DIR/tokenizer.json (required), DIR/tokenizer_config.json and DIR/chat_template.jinja
  // (optional).
  static PretrainedTokenizer load(const std::string& dir);

  // Renders the chat template with `messages` ([{role, content}, ...]); `extra` adds template
  // variables (tools, date_string, enable_thinking, ...). Throws Error when there is no template.
  std::string apply_chat_template(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                  const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
};

}  // namespace remora
