// A Hugging Face tokenizer.json: text <-> ids, identical to the `tokenizers` library for the
// byte-level BPE (GPT-2, Llama 3, Qwen) and SentencePiece-style BPE (Llama 2, Mistral) families.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace remora {

class Tokenizer {
 public:
  // Reads a tokenizer.json file; every unsupported component is an Error naming it and the file.
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(const nlohmann::json& json, const std::string& where);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Ids of `text`; with add_special_tokens the post-processor's tokens (e.g. BOS) are added.
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Text of `ids`; ids the tokenizer does not know are skipped, as in the Rust crate.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  // The token string of an id ("" when unknown), and the id of a token string.
  std::string id_to_token(int64_t id) const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  bool is_special(int64_t id) const;
  // One past the largest id of the model vocab and the added tokens.
  int64_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace remora
