// An adapter factor cast to the activations' dtype, cast again only when the factor has changed.
#pragma once

#include <ATen/ATen.h>

namespace remora {

// The fp32 master factors change once per optimizer step (in place, which bumps their version
// counter), yet every forward (each micro-batch, each recomputed block, each decode step) cast them
// again. This keeps the last cast and returns it while the factor's storage, version and dtype and
// whether autograd records the cast are unchanged: gradients still reach the master through the
// kept cast's node, which holds no saved tensors and so can be backpropagated through repeatedly.
// Not for concurrent use: a module's forward runs on one thread at a time.
class FactorCast {
 public:
  const at::Tensor& get(const at::Tensor& factor, at::ScalarType dtype);

 private:
  at::Tensor cast_;
  at::Tensor source_;  // kept, so that no other tensor can take its place (and address) unnoticed
  const void* storage_ = nullptr;
  int64_t version_ = -1;
  bool recorded_ = false;
};

}  // namespace remora
