// Scalar bf16 conversions, an fp32 exp and lane sums, written so that compilers vectorise loops over them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstring>
#include <limits>

namespace remora {

// A bf16 tensor's storage as raw bits, for the kernels below.
inline const uint16_t* bf16_bits(const at::Tensor& t) { return static_cast<const uint16_t*>(t.data_ptr()); }
inline uint16_t* mutable_bf16_bits(const at::Tensor& t) { return static_cast<uint16_t*>(t.data_ptr()); }

// Partial sums a reduction loop keeps side by side, so that it vectorises without reassociating.
constexpr int64_t kLanes = 16;

// The total of kLanes partial sums, added pairwise (a tree, not a chain of 16 adds).
inline float sum_lanes(float* lanes) {
  for (int64_t width = kLanes / 2; width > 0; width /= 2) {
    for (int64_t lane = 0; lane < width; ++lane) lanes[lane] += lanes[lane + width];
  }
  return lanes[0];
}

// Four floats as one GCC vector: GCC 12 compiles a select between two of them to one max
// instruction in every instruction-set version (SSE2 included), where the same select written lane by
// lane over an array stays scalar and wider vectors go scalar below AVX-512.
typedef float FloatQuad __attribute__((vector_size(4 * sizeof(float))));

// The largest of `count` floats, NaNs passed over (-inf when nothing else is there), kLanes at a time
// in four vectors. Exact, so the order of the comparisons changes nothing but the sign of a zero.
inline float max_of(const float* values, int64_t count) {
  constexpr float kLowest = -std::numeric_limits<float>::infinity();
  constexpr int64_t kQuads = kLanes / 4;
  FloatQuad quads[kQuads];
  for (FloatQuad& quad : quads) quad = FloatQuad{kLowest, kLowest, kLowest, kLowest};
  int64_t j = 0;
  for (; j + kLanes <= count; j += kLanes) {
    for (int64_t q = 0; q < kQuads; ++q) {
      FloatQuad v;
      std::memcpy(&v, values + j + 4 * q, sizeof v);
      quads[q] = v > quads[q] ? v : quads[q];
    }
  }
  float max = kLowest;
  for (const FloatQuad& quad : quads) {
    for (int lane = 0; lane < 4; ++lane) max = quad[lane] > max ? quad[lane] : max;
  }
  for (; j < count; ++j) max = values[j] > max ? values[j] : max;
  return max;
}

inline float bf16_to_float(uint16_t bits) {
  const uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

// Round to nearest even, NaN to the quiet NaN: c10::BFloat16's conversion, without its branch.
inline uint16_t float_to_bf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  const uint32_t rounded = (word + 0x7FFFu + ((word >> 16) & 1u)) >> 16;
  const uint32_t nan = 0u - static_cast<uint32_t>(value != value);  // all ones for a NaN
  return static_cast<uint16_t>((rounded & ~nan) | (0x7FC0u & nan));
}

// fp32 rounded through bf16 and back: where the eager ops round an intermediate to the tensor dtype.
inline float round_through_bf16(float value) { return bf16_to_float(float_to_bf16(value)); }

// e^x within 2 ulp of fp32 (Cephes' expf polynomial after a two-part ln 2 reduction), overflowing
// to inf above ~88.7 and going through the subnormals to 0 below ~-103.9 like std::exp; no calls and
// no branches, so a loop over it vectorises. NaN in, NaN out.
inline float vector_exp(float x) {
  const float clamped = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
  // n = x / ln 2 rounded to nearest: adding and taking away 1.5 2^23 rounds away the fraction
  // (floorf would not vectorise unless traps are off).
  constexpr float kRound = 12582912.0f;
  const float rounded = (clamped * 1.44269504088896341f + kRound) - kRound;
  const float n = rounded == rounded ? rounded : 0.0f;  // a NaN x stays NaN through r below
  const float r = clamped - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float mantissa = p * r * r + r + 1.0f;
  // 2^n as two factors, each a normal float for n in [-150, 129]: 2^n itself may not be.
  const int32_t whole = static_cast<int32_t>(n);
  const int32_t half = whole >> 1;
  const uint32_t first_bits = static_cast<uint32_t>(half + 127) << 23;
  const uint32_t second_bits = static_cast<uint32_t>(whole - half + 127) << 23;
  float first, second;
  std::memcpy(&first, &first_bits, sizeof first);
  std::memcpy(&second, &second_bits, sizeof second);
  return mantissa * first * second;
}

// Replaces each of `count` floats x by e^(x - shift) and returns their total, added in kLanes partial
// sums: a softmax row's exp pass.
inline float exp_shifted_in_place(float* values, int64_t count, float shift) {
  float lane_sum[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= count; j += kLanes) {
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      values[j + lane] = vector_exp(values[j + lane] - shift);
      lane_sum[lane] += values[j + lane];
    }
  }
  for (; j < count; ++j) {
    values[j] = vector_exp(values[j] - shift);
    lane_sum[0] += values[j];
  }
  return sum_lanes(lane_sum);
}

}  // namespace remora
