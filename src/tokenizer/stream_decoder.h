// Incremental decoding for generation: text is emitted as soon as it is final, never half a UTF-8
// character, and with the same spaces a whole-sequence decode would give.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace remora {

class Tokenizer;

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  // The new text that `id` completes ("" while a character or a word's spacing is still open).
  std::string push(int64_t id);
  // Whatever is still held back (incomplete bytes come out as U+FFFD), at the end of a stream.
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  // As the Rust crate's DecodeStream: ids from prefix_index on are decoded with the ones before
  // read_index as context, so decoders that strip a leading space see the same neighbours.
  std::vector<int64_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
};

}  // namespace remora
