// Parsing and naming of tensor dtypes and devices, as users and file formats spell them.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace remora {

// "bfloat16" | "float32" (also "bf16", "fp32", "float16", "fp16"); throws Error naming `what` otherwise.
c10::ScalarType parse_compute_dtype(const std::string& name, const std::string& what = "--dtype");

// The name HF writes in config.json's torch_dtype: "bfloat16", "float32", "float16".
std::string torch_dtype_name(c10::ScalarType dtype);

// "cpu", "cuda", "cuda:1"; throws Error if CUDA is asked for and not available.
c10::Device parse_device(const std::string& name);

}  // namespace remora
