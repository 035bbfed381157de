// The bf16 projection of one-position decode steps, as a kernel that streams the weight once.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// Instruction sets the kernel has a version for; kNone means the machine has neither.
enum class DecodeIsa { kNone, kAvx2, kAvx512, kAvx512Bf16 };

// The best version this machine runs (AVX-512 with BF16 dot products, AVX-512 F/BW/VL, AVX2 with FMA, none).
DecodeIsa decode_isa();

// True when `linear(x, weight)` is a decode step the kernel serves: x [..., 1, in] (one position per
// row), x and weight bf16 on the CPU, weight [out, in] contiguous, no gradient needed, and the
// machine has a version. Why: LibTorch 1.13's bf16 `at::linear` of one row costs ~90 µs per call
// whatever the size of W (a 512 x 512 product is 0.5 MB of reads), most of batch-1 decode's time.
bool decode_linear_applies(const at::Tensor& x, const at::Tensor& weight);

// y = x W^T + b in fp32 accumulation, rounded once to bf16. Each output's bits depend only on its
// own row of x and on `isa`, never on how many rows come with it: serving's rows decoded together
// equal each decoded alone. `isa` defaults to decode_isa(); tests pass the others it supports.
at::Tensor decode_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         DecodeIsa isa = decode_isa());

}  // namespace remora
