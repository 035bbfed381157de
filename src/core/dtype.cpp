// Dtype and device names.
#include "core/dtype.h"

#include <ATen/Context.h>

#include "core/error.h"

namespace remora {

c10::ScalarType parse_compute_dtype(const std::string& name, const std::string& what) {
  if (name == "bfloat16" || name == "bf16") return c10::kBFloat16;
  if (name == "float32" || name == "fp32" || name == "float") return c10::kFloat;
  if (name == "float16" || name == "fp16" || name == "half") return c10::kHalf;
  fail(what, ": unknown dtype '", name, "' (expected bfloat16, float32 or float16)");
}

std::string torch_dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kBFloat16: return "bfloat16";
    case c10::kFloat: return "float32";
    case c10::kHalf: return "float16";
    default: fail("dtype ", c10::toString(dtype), " has no torch_dtype name");
  }
}

c10::Device parse_device(const std::string& name) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    fail("--device: unknown device '", name, "' (expected cpu, cuda or cuda:N)");
  }
  if (device.is_cuda() && !at::hasCUDA()) {
    fail("--device ", name, ": this build of LibTorch has no CUDA support or no GPU is visible");
  }
  return device;
}

}  // namespace remora
