// Tokenizer components on small hand-made tokenizer.json documents, streaming decode, training.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/pretrained.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace remora {
namespace {

using nlohmann::json;

// A SentencePiece-style BPE: ▁ for spaces, byte fallback, merges "▁ a" -> "▁a", "▁a b" -> "▁ab".
json sentencepiece_json(const json& merges) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"\xE2\x96\x81", 2}, {"a", 3}, {"b", 4}, {"\xE2\x96\x81" "a", 5},
                {"\xE2\x96\x81" "ab", 6}, {"1", 7}, {"2", 8}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 9 + b;
  }
  return {{"added_tokens", json::array({{{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}}})},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}}},
          {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true},
                     {"vocab", vocab}, {"merges", merges}}},
          {"post_processor", {{"type", "TemplateProcessing"},
                              {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder", {{"type", "Sequence"}, {"decoders", json::array({
              {{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}}};
}

TEST(Tokenizer, MergesInStringAndPairSpellingsAgree) {
  const auto legacy = Tokenizer::from_json(sentencepiece_json({"\xE2\x96\x81 a", "\xE2\x96\x81" "a b"}), "legacy");
  const auto pairs = Tokenizer::from_json(
      sentencepiece_json(json::array({{"\xE2\x96\x81", "a"}, {"\xE2\x96\x81" "a", "b"}})), "pairs");
  for (const char* text : {"ab ab", "a b", "ba"}) {
    EXPECT_EQ(legacy.encode(text), pairs.encode(text)) << text;
  }
  EXPECT_EQ(pairs.encode("ab ab"), (std::vector<int64_t>{6, 6}));
  EXPECT_EQ(pairs.encode("ab", true), (std::vector<int64_t>{1, 6}));
}

TEST(Tokenizer, ByteFallbackAndFusedUnknownAndDecode) {
  const auto tok = Tokenizer::from_json(sentencepiece_json({"\xE2\x96\x81 a", "\xE2\x96\x81" "a b"}), "sp");
  // "é" is not in the vocab: its two UTF-8 bytes come out as <0xC3> <0xA9>.
  EXPECT_EQ(tok.encode("a\xC3\xA9"), (std::vector<int64_t>{5, 9 + 0xC3, 9 + 0xA9}));
  EXPECT_EQ(tok.decode(tok.encode("ab \xC3\xA9 b")), "ab \xC3\xA9 b");
  // A lone continuation byte decodes to one U+FFFD per byte, as the Rust ByteFallback does.
  EXPECT_EQ(tok.decode({5, 9 + 0xA9, 9 + 0xA9}), "a\xEF\xBF\xBD\xEF\xBF\xBD");
  // Special tokens are split out before the pre-tokenizer and skipped on request.
  EXPECT_EQ(tok.encode("a<s>b"), (std::vector<int64_t>{5, 1, 4}));
  EXPECT_EQ(tok.decode({1, 5, 4}, /*skip_special_tokens=*/true), "ab");
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  json doc = sentencepiece_json({"\xE2\x96\x81 a"});
  doc["normalizer"] = {{"type", "BertNormalizer"}};
  try {
    Tokenizer::from_json(doc, "x/tokenizer.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BertNormalizer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("x/tokenizer.json"), std::string::npos) << e.what();
  }
  doc = sentencepiece_json({"\xE2\x96\x81 a"});
  doc["model"]["type"] = "Unigram";
  EXPECT_THROW(Tokenizer::from_json(doc, "t"), Error);
  doc = sentencepiece_json({"a zzz"});
  EXPECT_THROW(Tokenizer::from_json(doc, "t"), Error);  // merge of a token missing from the vocab
}

std::vector<std::string> corpus() {
  return {"The quick brown fox jumps over the lazy dog. ", "Mixed 中文 text with emoji 😀👍🏽 and numbers 12345.\n",
          "def f(x):\n    return x * 2  # twice\n", "naïve café résumé — “quoted” ‘text’ … ",
          "The dog jumps; the fox sleeps. The end."};
}

TEST(Trainer, WritesALosslessDeterministicByteLevelTokenizer) {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  const auto doc = train_byte_level_bpe(corpus(), options);
  EXPECT_EQ(doc, train_byte_level_bpe(corpus(), options));
  EXPECT_TRUE(doc["model"]["merges"][0].is_array());  // the current pair spelling
  const auto tok = Tokenizer::from_json(json(doc), "trained");
  EXPECT_LE(tok.vocab_size(), 300);
  EXPECT_GT(tok.vocab_size(), 259);
  for (const auto& text : corpus()) EXPECT_EQ(tok.decode(tok.encode(text)), text);
  // Unseen text still round-trips: every byte has a symbol.
  const std::string unseen = "Ωmega ∞ \x01 tabs\t\t and 🚀";
  EXPECT_EQ(tok.decode(tok.encode(unseen)), unseen);
  EXPECT_EQ(tok.encode("<|im_start|>user"), tok.encode("<|im_start|>user"));
  EXPECT_EQ(tok.encode("<|im_start|>")[0], 1);
  // Merges shorten text: the training corpus takes fewer tokens than bytes.
  EXPECT_LT(tok.encode(corpus()[0]).size(), corpus()[0].size() * 2 / 3);
  BpeTrainerOptions too_small;
  too_small.vocab_size = 100;
  EXPECT_THROW(train_byte_level_bpe(corpus(), too_small), Error);
}

TEST(StreamDecoder, NeverSplitsACharacterAndMatchesWholeDecode) {
  BpeTrainerOptions options;
  options.vocab_size = 290;  // few merges: emoji and CJK stay split into single bytes
  const auto tok = Tokenizer::from_json(json(train_byte_level_bpe(corpus(), options)), "trained");
  for (const auto& text : corpus()) {
    const auto ids = tok.encode(text);
    StreamDecoder stream(tok);
    std::string joined;
    for (const int64_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(utf8::is_valid(piece)) << "piece of " << text;
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "piece of " << text;
      joined += piece;
    }
    joined += stream.finish();
    EXPECT_EQ(joined, text);
  }
}

TEST(StreamDecoder, KeepsSentencePieceSpacesLikeWholeDecode) {
  const auto tok = Tokenizer::from_json(sentencepiece_json({"\xE2\x96\x81 a", "\xE2\x96\x81" "a b"}), "sp");
  const auto ids = tok.encode("ab a b \xC3\xA9");
  StreamDecoder stream(tok);
  std::string joined;
  for (const int64_t id : ids) joined += stream.push(id);
  joined += stream.finish();
  EXPECT_EQ(joined, tok.decode(ids));
  EXPECT_EQ(joined, "ab a b \xC3\xA9");
}

}  // namespace
}  // namespace remora
