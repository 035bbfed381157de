// tokenizer.json "normalizer": NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Sequence.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace remora {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// Builds the normalizer a tokenizer.json describes (null -> nullptr); an unknown type is an Error
// naming it and `where`.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec, const std::string& where);

// Replaces every occurrence of `from` (non-empty) by `to`.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);

}  // namespace remora
