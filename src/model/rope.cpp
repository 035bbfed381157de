// RoPE tables and rotation.
#include "model/rope.h"

#include <ATen/ATen.h>

#include <cmath>

namespace remora {

at::Tensor rope_inverse_frequencies(const ModelConfig& config) {
  const int64_t dim = config.head_dim;
  // Same op order as transformers: arange in int64, then float, divided by dim, theta**that.
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inverse = 1.0 / at::pow(config.rope_theta, exponents);
  const RopeScaling& s = config.rope_scaling;
  switch (s.type) {
    case RopeScalingType::kNone:
      return inverse;
    case RopeScalingType::kLinear:
      // Linear scaling divides positions by factor, which is the same as dividing frequencies.
      return inverse / s.factor;
    case RopeScalingType::kLlama3: {
      const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
      const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
      at::Tensor wavelen = 2.0 * M_PI / inverse;
      // Long wavelengths are slowed down by factor, short ones kept, the band between blended.
      at::Tensor scaled = at::where(wavelen > low_wavelen, inverse / s.factor, inverse);
      at::Tensor smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                          (s.high_freq_factor - s.low_freq_factor);
      at::Tensor blended = (1 - smooth) * scaled / s.factor + smooth * scaled;
      at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
      return at::where(medium, blended, scaled);
    }
  }
  return inverse;
}

std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& inverse_frequencies,
                                              const at::Tensor& positions) {
  // freqs [B, T, Dh/2] = position x inverse frequency; the table repeats it for both halves.
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) *
                     inverse_frequencies.to(positions.device()).view({1, 1, -1});
  at::Tensor angles = at::cat({freqs, freqs}, -1);
  return {angles.cos(), angles.sin()};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const auto in_x_dtype = [&](const at::Tensor& t) { return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type()); };
  at::Tensor c = in_x_dtype(cos).unsqueeze(1);
  at::Tensor s = in_x_dtype(sin).unsqueeze(1);
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * c + rotated * s;
}

}  // namespace remora
