// Jinja lexing: tags are found left to right; string literals inside tags may contain "%}".
#include "tokenizer/jinja/lexer.h"

#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace remora::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::vector<Token> tokenize_tag(const std::string& body, const std::string& name, const std::string& tag) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < body.size()) {
    const char c = body[i];
    if (is_space(c)) {
      ++i;
      continue;
    }
    Token token;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < body.size() && (std::isalnum(static_cast<unsigned char>(body[j])) || body[j] == '_')) ++j;
      token.type = Token::Type::Name;
      token.text = body.substr(i, j - i);
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < body.size() && (std::isdigit(static_cast<unsigned char>(body[j])) || body[j] == '_')) ++j;
      if (j + 1 < body.size() && body[j] == '.' && std::isdigit(static_cast<unsigned char>(body[j + 1]))) {
        is_float = true;
        ++j;
        while (j < body.size() && std::isdigit(static_cast<unsigned char>(body[j]))) ++j;
      }
      std::string digits;
      for (size_t k = i; k < j; ++k) {
        if (body[k] != '_') digits += body[k];
      }
      token.type = is_float ? Token::Type::Float : Token::Type::Int;
      token.text = digits;
      if (is_float) {
        token.float_value = std::strtod(digits.c_str(), nullptr);
      } else {
        token.int_value = std::strtoll(digits.c_str(), nullptr, 10);
      }
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string value;
      size_t j = i + 1;
      while (j < body.size() && body[j] != c) {
        if (body[j] == '\\' && j + 1 < body.size()) {
          const char e = body[++j];
          switch (e) {
            case 'n': value += '\n'; break;
            case 't': value += '\t'; break;
            case 'r': value += '\r'; break;
            case '\\': value += '\\'; break;
            case '\'': value += '\''; break;
            case '"': value += '"'; break;
            default: value += '\\'; value += e; break;
          }
          ++j;
        } else {
          value += body[j++];
        }
      }
      if (j >= body.size()) fail(name, ": unterminated string in '", tag, "'");
      token.type = Token::Type::String;
      token.text = value;
      i = j + 1;
    } else {
      static const char* const operators[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                              "(",  ")",  "[",  "]",  "{",  "}",  ",", ".", ":", "|", "=", "<", ">"};
      token.type = Token::Type::Op;
      for (const char* op : operators) {
        if (body.compare(i, std::char_traits<char>::length(op), op) == 0) {
          token.text = op;
          break;
        }
      }
      if (token.text.empty()) fail(name, ": unexpected character '", std::string(1, c), "' in '", tag, "'");
      i += token.text.size();
    }
    tokens.push_back(std::move(token));
  }
  tokens.push_back(Token{});
  return tokens;
}

// Index of the closing delimiter of a tag whose body starts at `from`, skipping string literals.
size_t find_close(const std::string& source, size_t from, const std::string& close) {
  char quote = 0;
  for (size_t i = from; i < source.size(); ++i) {
    const char c = source[i];
    if (quote) {
      if (c == '\\') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (source.compare(i, close.size(), close) == 0) {
      return i;
    }
  }
  return std::string::npos;
}

}  // namespace

std::vector<Chunk> lex(const std::string& source, const std::string& name) {
  std::vector<Chunk> chunks;
  std::string text;
  bool strip_next = false;  // a "-" on the previous tag's right side
  size_t pos = 0;
  auto flush_text = [&] {
    if (!text.empty()) chunks.push_back({Chunk::Type::Text, text, {}});
    text.clear();
  };
  while (pos < source.size()) {
    const size_t open = source.find('{', pos);
    const bool is_tag = open != std::string::npos && open + 1 < source.size() &&
                        (source[open + 1] == '{' || source[open + 1] == '%' || source[open + 1] == '#');
    if (!is_tag) {
      const size_t end = open == std::string::npos ? source.size() : open + 1;
      std::string piece = source.substr(pos, end - pos);
      if (strip_next) {
        size_t k = 0;
        while (k < piece.size() && is_space(piece[k])) ++k;
        piece.erase(0, k);
        if (!piece.empty()) strip_next = false;
      }
      text += piece;
      pos = end;
      continue;
    }
    std::string before = source.substr(pos, open - pos);
    if (strip_next) {
      size_t k = 0;
      while (k < before.size() && is_space(before[k])) ++k;
      before.erase(0, k);
      strip_next = false;
    }
    text += before;
    const char kind = source[open + 1];
    size_t body_start = open + 2;
    const bool strip_left = body_start < source.size() && source[body_start] == '-';
    const bool keep_left = body_start < source.size() && source[body_start] == '+';
    if (strip_left || keep_left) ++body_start;
    if (strip_left) {
      while (!text.empty() && is_space(text.back())) text.pop_back();
    } else if (kind != '{' && !keep_left) {
      // lstrip_blocks: spaces and tabs from the start of the line up to a block or comment tag.
      size_t k = open;
      while (k > 0 && (source[k - 1] == ' ' || source[k - 1] == '\t')) --k;
      if (k == 0 || source[k - 1] == '\n') {
        for (size_t n = open - k; n > 0 && !text.empty() && (text.back() == ' ' || text.back() == '\t'); --n) {
          text.pop_back();
        }
      }
    }
    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    const size_t close_at = kind == '#' ? source.find(close, body_start) : find_close(source, body_start, close);
    if (close_at == std::string::npos) {
      fail(name, ": unclosed tag starting '", source.substr(open, 40), "'");
    }
    size_t body_end = close_at;
    const bool strip_right = body_end > body_start && source[body_end - 1] == '-';
    if (strip_right) --body_end;
    const std::string body = source.substr(body_start, body_end - body_start);
    const std::string tag = source.substr(open, close_at + 2 - open);
    pos = close_at + 2;
    if (kind != '#') {
      flush_text();
      chunks.push_back({kind == '{' ? Chunk::Type::Expression : Chunk::Type::Statement, tag,
                        tokenize_tag(body, name, tag)});
    }
    if (strip_right) {
      strip_next = true;
    } else if (kind != '{' && pos < source.size() && source[pos] == '\n') {
      ++pos;  // trim_blocks: the newline after a block or comment tag
    } else if (kind != '{' && pos + 1 < source.size() && source[pos] == '\r' && source[pos + 1] == '\n') {
      pos += 2;
    }
  }
  flush_text();
  return chunks;
}

}  // namespace remora::jinja
