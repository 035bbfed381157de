// Fuzzes model.safetensors.index.json against a folder holding two valid shards (a.safetensors with
// tensor "x", b.safetensors with "y"): shard names, path traversal, duplicates, missing tensors.
#include <ATen/ATen.h>

#include "fuzz_files.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string& dir = remora::fuzz::scratch();
  remora::write_safetensors(dir + "/a.safetensors", {{"x", at::ones({2}, at::kFloat)}});
  remora::write_safetensors(dir + "/b.safetensors", {{"y", at::ones({3}, at::kFloat)}});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  remora::fuzz::write_file("model.safetensors.index.json", data, size);
  try {
    remora::CheckpointTensors checkpoint(remora::fuzz::scratch());
    for (const auto& name : checkpoint.names()) checkpoint.find(name);
  } catch (const remora::Error&) {
  }
  return 0;
}
