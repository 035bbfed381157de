// UTF-8 helpers for the tokenizer: code point iteration, encoding, lossy decoding like Rust/WHATWG.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace remora::utf8 {

// Length of the UTF-8 sequence that starts with byte `lead` (1 for invalid lead bytes, so callers
// always make progress).
inline size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// True for the bytes 10xxxxxx that continue a multi-byte sequence (never where a character starts).
inline bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// Decodes the code point at text[pos] and advances pos; invalid input yields U+FFFD and one byte.
char32_t next(std::string_view text, size_t& pos);

// Appends the UTF-8 encoding of a code point.
void append(std::string& out, char32_t code_point);

// Bytes -> valid UTF-8, replacing each maximal invalid subpart with U+FFFD (what Rust's
// String::from_utf8_lossy and JavaScript's TextDecoder do, so decodes agree byte for byte).
std::string decode_lossy(std::string_view bytes);

// True when the bytes are valid UTF-8.
bool is_valid(std::string_view bytes);

}  // namespace remora::utf8
