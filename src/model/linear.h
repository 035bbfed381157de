// The projections of a decoder block: an interface adapters can wrap, and the frozen base Linear.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace remora {

// Anything that maps [..., in] -> [..., out] in a decoder block. The base model uses Linear; the
// adapter layer implements the same interface around a Linear, so the decoder never branches on it.
class Projection : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
};

// y = x W^T + b, with W [out, in] stored in the model's weight dtype; x is cast to that dtype.
// Parameters are registered as "weight" and "bias" (HF names) and do not require gradients.
class Linear : public Projection {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  void pretty_print(std::ostream& stream) const override;

  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
};

}  // namespace remora
