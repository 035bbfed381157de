// LibTorch's AdamW with its update done in one pass over each parameter's elements on the CPU.
#pragma once

#include <torch/optim/adamw.h>

#include <vector>

namespace remora {

// torch::optim::AdamW, same options, state and saved format, whose step reads a parameter, its
// gradient and both moments once and writes them once, where LibTorch's runs nine element-wise ops
// (each a pass over memory, three of them allocating). Why: with a few million adapter parameters
// those passes took 14-16 ms of a ~450 ms ReMix step, this one 5-6.5 (bench/profile_ops.py). The
// arithmetic is LibTorch's, op by op and rounding by rounding (fused multiply-adds where its
// vectorised kernels use them), so the parameters come out bit-identical to LibTorch's step.
// Parameters that are not dense contiguous fp32 CPU tensors, and amsgrad, take LibTorch's step.
class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace remora
