// The bytes_to_unicode table of GPT-2: printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100 onwards in byte order.
#include "tokenizer/byte_level.h"

#include <array>
#include <unordered_map>

#include "tokenizer/utf8.h"

namespace remora::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> chars;
  std::unordered_map<char32_t, unsigned char> bytes;

  Tables() {
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const char32_t cp = printable ? static_cast<char32_t>(b) : extra++;
      utf8::append(chars[b], cp);
      bytes[cp] = static_cast<unsigned char>(b);
    }
  }
};

const Tables& tables() {
  static const Tables instance;
  return instance;
}

}  // namespace

std::string encode(std::string_view text) {
  const auto& t = tables();
  std::string out;
  out.reserve(text.size() * 2);
  for (unsigned char c : text) out += t.chars[c];
  return out;
}

std::optional<unsigned char> byte_of(char32_t character) {
  const auto& t = tables();
  const auto it = t.bytes.find(character);
  if (it == t.bytes.end()) return std::nullopt;
  return it->second;
}

const std::string& char_of(unsigned char byte) { return tables().chars[byte]; }

}  // namespace remora::byte_level
