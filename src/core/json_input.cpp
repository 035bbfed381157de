// Depth-checked JSON parsing: a linear scan bounds the nesting before nlohmann::json builds anything.
#include "core/json_input.h"

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace remora {
namespace {

std::string prefix(const std::string& source) { return source.empty() ? "" : source + ": "; }

// Throws when brackets outside strings nest deeper than the limit. On valid JSON this is the
// document's depth; on invalid JSON the parser stops at the first error, before any deeper part.
void check_depth(const std::string& text, const std::string& source) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        fail(prefix(source), "JSON nested deeper than ", kMaxJsonDepth, " levels (at byte ", i, ")");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

}  // namespace

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  check_depth(text, source);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(prefix(source), "not valid JSON (", e.what(), ")");
  }
}

std::string describe(const nlohmann::json& value) {
  const std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() <= 80) return text;
  size_t cut = 80;
  while (cut > 0 && utf8::is_continuation(text[cut])) --cut;  // not inside a character
  return text.substr(0, cut) + "...";
}

nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes) {
  return parse_json(read_text_file(path, max_bytes), path);
}

}  // namespace remora
