// Splits a Jinja template into text, {{ expression }} and {% statement %} chunks, applying the
// whitespace rules transformers renders chat templates with (trim_blocks, lstrip_blocks, "-").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace remora::jinja {

struct Token {
  enum class Type { Name, String, Int, Float, Op, End };
  Type type = Type::End;
  std::string text;  // name, operator, or string literal value
  int64_t int_value = 0;
  double float_value = 0;
};

struct Chunk {
  enum class Type { Text, Expression, Statement };
  Type type;
  std::string text;           // the text, or the tag's source (quoted in errors)
  std::vector<Token> tokens;  // for tags; ends with an End token
};

// Throws Error naming the template and the offending tag.
std::vector<Chunk> lex(const std::string& source, const std::string& name);

// A tag quoted in an error message, cut to its first 80 bytes so a hostile template's error stays one
// readable line.
inline std::string excerpt(const std::string& tag) { return tag.size() <= 80 ? tag : tag.substr(0, 80) + "..."; }

}  // namespace remora::jinja
