// UTF-8 decoding with the WHATWG "maximal subpart" replacement rule.
#include "tokenizer/utf8.h"

namespace remora::utf8 {
namespace {

// Length of the valid sequence at bytes[pos], or 0 when invalid; `consumed` is the maximal invalid
// subpart (at least 1) in that case.
size_t valid_sequence(std::string_view bytes, size_t pos, size_t& consumed) {
  const auto b0 = static_cast<unsigned char>(bytes[pos]);
  consumed = 1;
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i <= need; ++i) {
    if (pos + i >= bytes.size()) return 0;
    const auto b = static_cast<unsigned char>(bytes[pos + i]);
    // Only the second byte has a narrowed range.
    const unsigned char low = i == 1 ? lo : 0x80, high = i == 1 ? hi : 0xBF;
    if (b < low || b > high) return 0;
    consumed = i + 1;
  }
  return need + 1;
}

}  // namespace

char32_t next(std::string_view text, size_t& pos) {
  size_t consumed;
  const size_t length = valid_sequence(text, pos, consumed);
  if (length == 0) {
    pos += consumed;
    return 0xFFFD;
  }
  const auto b0 = static_cast<unsigned char>(text[pos]);
  char32_t cp = length == 1 ? b0 : length == 2 ? (b0 & 0x1F) : length == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += length;
  return cp;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string decode_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t consumed;
    const size_t length = valid_sequence(bytes, pos, consumed);
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      pos += consumed;
    } else {
      out.append(bytes.substr(pos, length));
      pos += length;
    }
  }
  return out;
}

bool is_valid(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t consumed;
    const size_t length = valid_sequence(bytes, pos, consumed);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

}  // namespace remora::utf8
