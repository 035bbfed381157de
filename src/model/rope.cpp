// RoPE tables and rotation.
#include "model/rope.h"

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>

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

namespace {

// apply_rope for a bf16 decode step (T = 1) on the CPU in one pass, with the eager formula's three
// roundings: bf16(x*c), bf16(rotated*s), bf16 of their sum (LibTorch's bf16 CPU ops compute each in
// fp32 and round once), so the bits equal the eager path's. Why: the eager form is a cat, a neg, two
// products and a sum, five calls of a few µs each on 64 values, twice per layer and step.
bool one_bf16_step(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x.dim() == 4 && x.size(2) == 1 && x.scalar_type() == at::kBFloat16 && x.device().is_cpu() &&
         cos.scalar_type() == at::kBFloat16 && sin.scalar_type() == at::kBFloat16 && cos.dim() == 3 &&
         cos.size(0) == x.size(0) && cos.size(1) == 1 && cos.size(2) == x.size(3) && sin.sizes() == cos.sizes() &&
         !(at::GradMode::is_enabled() && x.requires_grad());
}

at::Tensor rope_one_bf16_step(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t B = x.size(0), H = x.size(1), Dh = x.size(3), half = Dh / 2;
  const at::Tensor c = cos.contiguous(), s = sin.contiguous();
  at::Tensor out = at::empty({B, H, 1, Dh}, x.options());
  const auto* in = x.data_ptr<at::BFloat16>();
  const auto* cos_data = c.data_ptr<at::BFloat16>();
  const auto* sin_data = s.data_ptr<at::BFloat16>();
  auto* result = out.data_ptr<at::BFloat16>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const at::BFloat16* row = in + b * x.stride(0) + h * x.stride(1);
      const auto value = [&](int64_t d) { return float(row[d * x.stride(3)]); };
      for (int64_t d = 0; d < Dh; ++d) {
        const float rotated = d < half ? -value(d + half) : value(d - half);
        const at::BFloat16 direct(value(d) * float(cos_data[b * Dh + d]));
        const at::BFloat16 turned(rotated * float(sin_data[b * Dh + d]));
        result[(b * H + h) * Dh + d] = at::BFloat16(float(direct) + float(turned));
      }
    }
  }
  return out;
}

}  // namespace

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (one_bf16_step(x, cos, sin)) return rope_one_bf16_step(x, cos, sin);
  const int64_t half = x.size(-1) / 2;
  const auto in_x_dtype = [&](const at::Tensor& t) { return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type()); };
  at::Tensor c = in_x_dtype(cos).unsqueeze(1);
  at::Tensor s = in_x_dtype(sin).unsqueeze(1);
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * c + rotated * s;
}

}  // namespace remora
