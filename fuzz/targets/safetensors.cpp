// Fuzzes the safetensors reader: header length, JSON header, dtypes, shapes, offsets, then loads
// every tensor it accepted (so a wrong bounds check shows up as an ASan report).
#include "fuzz_files.h"
#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = remora::fuzz::write_file("model.safetensors", data, size);
  try {
    remora::SafetensorsFile file(path);
    for (const auto& entry : file.entries()) file.load(entry.name);
  } catch (const remora::Error&) {
  }
  return 0;
}
