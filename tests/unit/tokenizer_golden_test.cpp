// Encodes and decodes the golden corpus with real tokenizer files and compares every id, token and
// decoded string with what Hugging Face's JavaScript tokenizer produced (tests/tokenizer_golden).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "tokenizer/tokenizer.h"

namespace remora {
namespace {

const Tokenizer& family_tokenizer(const std::string& family) {
  static std::map<std::string, Tokenizer> loaded;
  auto it = loaded.find(family);
  if (it == loaded.end()) {
    it = loaded.emplace(family, Tokenizer::from_file(std::string(REMORA_TOKENIZER_FILES) + "/" + family +
                                                     "/tokenizer.json")).first;
  }
  return it->second;
}

nlohmann::json golden(const std::string& family) {
  return nlohmann::json::parse(
      read_text_file(std::string(REMORA_TOKENIZER_GOLDEN) + "/" + family + "/golden.json"));
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, IdsTokensAndDecodeMatchReference) {
  const Tokenizer& tokenizer = family_tokenizer(GetParam());
  const auto cases = golden(GetParam()).at("cases");
  ASSERT_GE(cases.size(), 35u);
  size_t lossless = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    SCOPED_TRACE("text: " + text);
    const auto ids = tokenizer.encode(text, /*add_special_tokens=*/false);
    EXPECT_EQ(ids, c.at("ids").get<std::vector<int64_t>>());
    EXPECT_EQ(tokenizer.encode(text, /*add_special_tokens=*/true), c.at("ids_special").get<std::vector<int64_t>>());
    std::vector<std::string> tokens;
    for (const int64_t id : ids) tokens.push_back(tokenizer.id_to_token(id));
    EXPECT_EQ(tokens, c.at("tokens").get<std::vector<std::string>>());
    const std::string decoded = tokenizer.decode(ids);
    EXPECT_EQ(decoded, c.at("decoded").get<std::string>());
    if (decoded == text) ++lossless;
  }
  // Only inputs the tokenizer cannot reproduce may fail to round-trip (NFC-changed text, special
  // tokens the SentencePiece decoder re-spaces); the corpus is chosen so nearly all do.
  EXPECT_GE(lossless, cases.size() - 4);
}

INSTANTIATE_TEST_SUITE_P(Families, GoldenTest, ::testing::Values("llama3", "qwen3", "mistral"));

}  // namespace
}  // namespace remora
