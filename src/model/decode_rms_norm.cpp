// RMSNorm of one-position decode steps in one pass over each row.
#include "model/decode_rms_norm.h"

#include <c10/util/BFloat16.h>

#include <cmath>

#include "model/decode_linear.h"

namespace remora {

bool decode_rms_norm_applies(const at::Tensor& x, const at::Tensor& weight) {
  return decode_linear_applies(x, weight.view({1, -1})) && weight.dim() == 1;
}

at::Tensor decode_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 && weight.dim() == 1 &&
                  x.size(-1) == weight.size(0),
              "decode_rms_norm: expected bf16 x [..., ", weight.size(0), "] and a bf16 weight");
  const int64_t size = weight.size(0);
  const at::Tensor flat = x.reshape({-1, size}).contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor y = at::empty(flat.sizes(), flat.options());
  const auto* in = flat.data_ptr<at::BFloat16>();
  const auto* scale = w.data_ptr<at::BFloat16>();
  auto* out = y.data_ptr<at::BFloat16>();
  constexpr int64_t kLanes = 16;  // independent partial sums: the compiler vectorises them
  for (int64_t row = 0; row < flat.size(0); ++row) {
    const at::BFloat16* values = in + row * size;
    float partial[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= size; i += kLanes) {
      for (int64_t lane = 0; lane < kLanes; ++lane) {
        const float v = values[i + lane];
        partial[lane] += v * v;
      }
    }
    for (; i < size; ++i) partial[i % kLanes] += float(values[i]) * float(values[i]);
    float sum = 0;
    for (float p : partial) sum += p;
    const float inverse_rms = 1.0f / std::sqrt(sum / float(size) + float(eps));
    for (int64_t j = 0; j < size; ++j) {
      const at::BFloat16 normed(float(values[j]) * inverse_rms);
      out[row * size + j] = at::BFloat16(float(scale[j]) * float(normed));
    }
  }
  return y.view(x.sizes());
}

}  // namespace remora
