// Fuzzes YAML recipes: YAML parsing and alias expansion limits, every key's typed check, the adapter
// settings, and the cross-key rules (keys that do nothing, samples, clipping).
#include "fuzz_files.h"
#include "core/error.h"
#include "train/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = remora::fuzz::write_file("recipe.yaml", data, size);
  try {
    remora::Recipe::load(path);
  } catch (const remora::Error&) {
  }
  return 0;
}
