// GPT-2's reversible byte <-> printable character map used by byte-level BPE (space -> "Ġ").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace remora::byte_level {

// Each byte of `text` replaced by its printable stand-in character (UTF-8 encoded).
std::string encode(std::string_view text);

// The byte a stand-in character stands for, or nothing for characters outside the map.
std::optional<unsigned char> byte_of(char32_t character);

// Stand-in character of a byte, UTF-8 encoded.
const std::string& char_of(unsigned char byte);

}  // namespace remora::byte_level
