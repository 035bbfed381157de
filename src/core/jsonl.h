// Reading JSONL records: blank lines, one object per line, required string fields; the messages are
// the ones each reader wraps with its file and line.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "core/json_input.h"

namespace remora {

// Lines of only spaces, tabs or a CR are allowed between records.
inline bool is_blank_line(const std::string& text) { return text.find_first_not_of(" \t\r") == std::string::npos; }

// One line parsed as a JSON object; throws Error (without file or line) when it is not one.
inline nlohmann::json parse_jsonl_object(const std::string& text) {
  nlohmann::json record = parse_json(text, "");
  if (!record.is_object()) fail("a line must be a JSON object");
  return record;
}

// The string at `key`; throws Error naming the key when it is missing or not a string (the caller adds
// file and line).
inline const std::string& string_field(const nlohmann::json& record, const char* key) {
  const auto it = record.find(key);
  if (it == record.end()) fail("missing field '", key, "'");
  if (!it->is_string()) fail("field '", key, "' must be a string, got ", it->dump());
  return it->get_ref<const std::string&>();
}

}  // namespace remora
