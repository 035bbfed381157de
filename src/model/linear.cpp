// The frozen base Linear.
#include "model/linear.h"

#include <ATen/ATen.h>

#include "model/decode_linear.h"

namespace remora {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options), false);
  if (bias) this->bias = register_parameter("bias", at::empty({out_features}, options), false);
}

at::Tensor Linear::forward(const at::Tensor& x) {
  // (`to` is a dispatched call even when it has nothing to do: decode makes ~85 per token.)
  const at::Tensor input = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  if (decode_linear_applies(input, weight)) return decode_linear(input, weight, bias);
  return at::linear(input, weight, bias);
}

void Linear::pretty_print(std::ostream& stream) const {
  stream << "Linear(in=" << in_features() << ", out=" << out_features()
         << ", bias=" << bias.defined() << ")";
}

}  // namespace remora
