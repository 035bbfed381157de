// tokenizer.json "decoder": ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace remora {

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  // Rewrites the token strings; the decoded text is the concatenation of the result.
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};

std::unique_ptr<TokenDecoder> make_decoder(const nlohmann::json& spec, const std::string& where);

}  // namespace remora
