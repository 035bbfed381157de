// An adapter factor cast to the activations' dtype once per change of the factor.
#include "adapters/factor_cast.h"

#include <ATen/core/grad_mode.h>

namespace remora {

const at::Tensor& FactorCast::get(const at::Tensor& factor, at::ScalarType dtype) {
  if (factor.scalar_type() == dtype) return factor;
  const bool recorded = at::GradMode::is_enabled() && factor.requires_grad();
  const void* storage = factor.data_ptr();
  const int64_t version = static_cast<int64_t>(factor._version());
  const bool stale = !cast_.defined() || !source_.is_same(factor) || storage != storage_ || version != version_ ||
                     cast_.scalar_type() != dtype || recorded != recorded_;
  if (stale) {
    cast_ = factor.to(dtype);
    source_ = factor;
    storage_ = storage;
    version_ = version;
    recorded_ = recorded;
  }
  return cast_;
}

}  // namespace remora
