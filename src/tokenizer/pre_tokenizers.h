// tokenizer.json "pre_tokenizer": ByteLevel, Split, Metaspace, Digits, Whitespace(Split), Sequence.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace remora {

// A stretch of normalised text; `at_start` is true only for a piece that begins the whole input
// (Metaspace's prepend_scheme "first" needs it).
struct Piece {
  std::string text;
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and possibly rewrites) each piece; empty pieces are dropped.
  virtual std::vector<Piece> split(std::vector<Piece> pieces) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec, const std::string& where);

// The regex GPT-2 and byte-level pre-tokenizers with use_regex split on.
extern const char* const kGpt2SplitPattern;

}  // namespace remora
