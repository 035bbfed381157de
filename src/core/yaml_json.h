// YAML documents read as JSON values, so YAML inputs (recipes, task lists, command-line values) share
// JSON's typed checks, within limits a hostile file cannot bypass (alias expansion, nesting, size).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace remora {

// A recipe or task list never holds this many values; an alias "billion laughs" expands past it.
constexpr int64_t kMaxYamlValues = 100'000;
// Recipes and task lists are a few KiB.
constexpr uint64_t kMaxYamlFileBytes = uint64_t{16} << 20;

// Parses YAML `text` into JSON, guessing scalar types the way the YAML 1.2 core schema does (quoted
// scalars stay strings). Throws Error starting with `source` when the text is not YAML, nests deeper
// than kMaxJsonDepth, or expands (through aliases) to more than kMaxYamlValues values.
nlohmann::json parse_yaml(const std::string& text, const std::string& source);

// parse_yaml of a regular file of at most kMaxYamlFileBytes.
nlohmann::json read_yaml_file(const std::string& path);

}  // namespace remora
