// Trains a small byte-level BPE tokenizer (GPT-2 style) and writes a tokenizer.json that Hugging
// Face's `tokenizers` loads.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace remora {

struct BpeTrainerOptions {
  int64_t vocab_size = 1024;  // special tokens + 256 bytes + merges
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  int64_t min_frequency = 2;  // a pair seen fewer times is never merged
};

// The tokenizer.json document for a byte-level BPE trained on `texts`: special tokens get ids
// 0.., then the 256 byte symbols, then one token per merge, most frequent pair first (ties broken by
// the pair's strings, so training is deterministic).
nlohmann::ordered_json train_byte_level_bpe(const std::vector<std::string>& texts, const BpeTrainerOptions& options);

}  // namespace remora
