// Fuzzes tokenizer.json loading, then encodes and decodes text with what loaded. The input is the
// tokenizer file, a NUL byte, and the text (no NUL: the file alone, encoding a fixed sentence).
#include <cstring>

#include "fuzz_files.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  const char* split = static_cast<const char*>(std::memchr(bytes, 0, size));
  const size_t file_size = split ? static_cast<size_t>(split - bytes) : size;
  const std::string text = split ? std::string(split + 1, bytes + size) : "Hello world, héllo 123 <|im_end|>";
  const std::string path = remora::fuzz::write_file("tokenizer.json", bytes, file_size);
  try {
    const remora::Tokenizer tokenizer = remora::Tokenizer::from_file(path);
    for (bool special : {false, true}) {
      const auto ids = tokenizer.encode(text, special);
      tokenizer.decode(ids);
    }
  } catch (const remora::Error&) {
  }
  return 0;
}
