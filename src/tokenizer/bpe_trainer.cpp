// Byte-level BPE training: words from the GPT-2 pre-tokenizer, counted once, then repeated
// most-frequent-pair merges over the distinct words.
#include "tokenizer/bpe_trainer.h"

#include <map>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/regex.h"

namespace remora {

nlohmann::ordered_json train_byte_level_bpe(const std::vector<std::string>& texts, const BpeTrainerOptions& options) {
  const int64_t base = static_cast<int64_t>(options.special_tokens.size()) + 256;
  REMORA_CHECK(options.vocab_size >= base, "--vocab-size must be at least ", base,
               " (special tokens + 256 byte symbols), got ", options.vocab_size);

  std::vector<std::string> tokens(options.special_tokens);
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_level::char_of(static_cast<unsigned char>(b)));
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < tokens.size(); ++i) ids[tokens[i]] = static_cast<int32_t>(i);

  // Distinct words (as byte symbol ids) with their counts.
  const Regex splitter(kGpt2SplitPattern, "train-tokenizer");
  std::map<std::string, int64_t> word_counts;
  for (const auto& text : texts) {
    for (const auto& [b, e] : splitter.find_all(text)) ++word_counts[text.substr(b, e - b)];
  }
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  for (const auto& [word, count] : word_counts) {
    std::vector<int32_t> symbols;
    for (unsigned char c : word) symbols.push_back(ids.at(byte_level::char_of(c)));
    words.push_back(std::move(symbols));
    counts.push_back(count);
  }

  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  while (static_cast<int64_t>(tokens.size()) < options.vocab_size) {
    std::unordered_map<uint64_t, int64_t> pair_counts;
    for (size_t w = 0; w < words.size(); ++w) {
      for (size_t i = 0; i + 1 < words[w].size(); ++i) {
        pair_counts[(static_cast<uint64_t>(words[w][i]) << 32) | static_cast<uint32_t>(words[w][i + 1])] += counts[w];
      }
    }
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [pair, count] : pair_counts) {
      const bool better = count > best_count ||
                          (count == best_count && std::make_pair(tokens[pair >> 32], tokens[pair & 0xFFFFFFFF]) <
                                                      std::make_pair(tokens[best >> 32], tokens[best & 0xFFFFFFFF]));
      if (better) {
        best = pair;
        best_count = count;
      }
    }
    if (best_count < options.min_frequency) break;
    const auto left = static_cast<int32_t>(best >> 32), right = static_cast<int32_t>(best & 0xFFFFFFFF);
    const std::string merged = tokens[left] + tokens[right];
    int32_t id;
    const auto existing = ids.find(merged);
    if (existing != ids.end()) {
      id = existing->second;
    } else {
      id = static_cast<int32_t>(tokens.size());
      tokens.push_back(merged);
      ids[merged] = id;
    }
    merges.push_back({tokens[left], tokens[right]});
    for (auto& word : words) {
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        if (word[i] == left && word[i + 1] == right) {
          word[i] = id;
          word.erase(word.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        }
      }
    }
  }

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = options.special_tokens.size(); i < tokens.size(); ++i) vocab[tokens[i]] = i;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < options.special_tokens.size(); ++i) {
    added.push_back({{"id", i}, {"content", options.special_tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
    vocab[options.special_tokens[i]] = i;
  }
  const nlohmann::ordered_json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level},
          {"post_processor", byte_level},
          {"decoder", byte_level},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

}  // namespace remora
