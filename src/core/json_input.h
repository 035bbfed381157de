// JSON read from users' files with the limits a hostile file cannot bypass: nesting depth (parsers and
// every recursive walk of a value would otherwise overflow the stack) and file size.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_util.h"

namespace remora {

// Deeper than any real config, tokenizer, adapter or data record (they nest fewer than 10 levels).
constexpr int kMaxJsonDepth = 256;

// Size cap of small JSON files (config.json, adapter_config.json, a shard index): far above real ones.
constexpr uint64_t kMaxConfigBytes = uint64_t{64} << 20;

// Parses `text`; throws Error starting with `source` (a file, "file:line", a flag) when it is not
// JSON, nests deeper than kMaxJsonDepth, or holds a number out of range. An empty `source` leaves the
// prefix to the caller (JSONL readers add "file:line").
nlohmann::json parse_json(const std::string& text, const std::string& source);

// A JSON value quoted in an error message: always valid UTF-8 (invalid bytes replaced; a YAML value
// may hold any) and at most 80 bytes, so a hostile value cannot make the error unreadable or throw.
std::string describe(const nlohmann::json& value);

// parse_json of a whole regular file of at most `max_bytes`, errors naming the path.
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = kMaxTextFileBytes);

}  // namespace remora
