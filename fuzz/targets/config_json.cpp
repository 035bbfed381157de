// Fuzzes config.json: every field's type and range, rope_scaling, sliding windows, token ids, caps.
#include "fuzz_files.h"
#include "core/error.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  remora::fuzz::write_file("config.json", data, size);
  try {
    const remora::ModelConfig config = remora::ModelConfig::load(remora::fuzz::scratch());
    volatile double parameters = config.implied_parameters();
    (void)parameters;
  } catch (const remora::Error&) {
  }
  return 0;
}
