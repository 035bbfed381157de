// The bf16 projection of one-position decode steps: each weight row streams once past up to 16 rows of
// x, accumulating in fp32 lanes (AVX-512 BF16 dot products, AVX-512 or AVX2 FMAs, chosen at run time).
#include "model/decode_linear.h"

#include <ATen/record_function.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/parallel.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn about it where they are
// inlined (GCC bug 105593); the warning is about the header, not this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace remora {
namespace {

// Weight bytes x rows of x per task: a parallel region's wake-up and barrier cost more than one core
// streaming a smaller matrix (measured on the 2-core machine: a 512 x 512 step on one core 15-30 µs).
constexpr int64_t kBytesPerTask = int64_t{1} << 20;
constexpr int64_t kPad = 32;  // x rows are padded with zeros to whole vectors of the widest version
// With two rows of x and more, each step of the weight stream waits on its load (perf: half the
// tile's samples); asking for the line 512 bytes ahead took 8 rows from ~5.6 to ~7.5 GB/s. One row
// alone is faster without it (the hardware prefetcher keeps up). Only the BF16 version was measured,
// so only it prefetches.
constexpr int64_t kPrefetchElements = 256;

// One tile: sums[r] = x[r] . w for one weight row and R rows of x (stride `padded`, zero past `in`).
// One weight row at a time, so the weight is read as a single sequential stream: reading 2-4 rows side
// by side (one load from each per step) streamed 8-10 GB/s on the 2-core Zen 4 machine, one row
// 14 GB/s, 27 with huge pages. Every sum is accumulated lane by lane in the same order and reduced in a
// fixed order whatever R is: that is what makes a row's bits independent of its neighbours. The pack R
// indexes every array by constants, so the accumulators stay in registers.
template <class Input>
using TileFn = void (*)(const Input* x, int64_t padded, const uint16_t* w, int64_t in, float* sums);

#if defined(__x86_64__)
#define REMORA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define REMORA_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define REMORA_AVX2 __attribute__((target("avx2,fma")))

REMORA_AVX512 inline float reduce512(__m512 v) {  // a fixed pairwise order: halves, quarters, pairs
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// AVX-512 with BF16 dot products (Zen 4, Sapphire Rapids): x stays bf16, 32 products per instruction.
struct Avx512Bf16 {
  using Input = uint16_t;
  static constexpr int kRows = 16;  // 16 accumulators + the weights + a row of the 32 registers

  template <int... R>
  REMORA_AVX512_BF16 static void tile(std::integer_sequence<int, R...>, const uint16_t* x, int64_t padded,
                                      const uint16_t* w, int64_t in, float* sums) {
    __m512 acc[] = {((void)R, _mm512_setzero_ps())...};
    int64_t i = 0;
    for (; i + 32 <= in; i += 32) {  // masked loads only for the tail: they are slower (Zen 4)
      if (sizeof...(R) >= 2) _mm_prefetch(reinterpret_cast<const char*>(w + i + kPrefetchElements), _MM_HINT_T0);
      const __m512bh weights = (__m512bh)_mm512_loadu_si512(w + i);
      ((acc[R] = _mm512_dpbf16_ps(acc[R], (__m512bh)_mm512_loadu_si512(x + R * padded + i), weights)), ...);
    }
    if (i < in) {
      const __m512bh weights = (__m512bh)_mm512_maskz_loadu_epi16(__mmask32((1u << (in - i)) - 1), w + i);
      ((acc[R] = _mm512_dpbf16_ps(acc[R], (__m512bh)_mm512_loadu_si512(x + R * padded + i), weights)), ...);
    }
    ((sums[R] = reduce512(acc[R])), ...);
  }
};

// AVX-512 F/BW: weights widened to fp32 (exact: the bits move up 16), fp32 FMAs.
struct Avx512 {
  using Input = float;
  static constexpr int kRows = 16;

  REMORA_AVX512 static __m512 widen(__m256i bits) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  }
  template <int... R>
  REMORA_AVX512 static void tile(std::integer_sequence<int, R...>, const float* x, int64_t padded,
                                 const uint16_t* w, int64_t in, float* sums) {
    __m512 acc[] = {((void)R, _mm512_setzero_ps())...};
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
      const __m512 weights = widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)));
      ((acc[R] = _mm512_fmadd_ps(weights, _mm512_loadu_ps(x + R * padded + i), acc[R])), ...);
    }
    if (i < in) {
      const __m512 weights = widen(_mm256_maskz_loadu_epi16(__mmask16((1u << (in - i)) - 1), w + i));
      ((acc[R] = _mm512_fmadd_ps(weights, _mm512_loadu_ps(x + R * padded + i), acc[R])), ...);
    }
    ((sums[R] = reduce512(acc[R])), ...);
  }
};

// AVX2 with FMA: as Avx512, 8 lanes.
struct Avx2 {
  using Input = float;
  static constexpr int kRows = 8;  // 8 accumulators + the weights + a row of the 16 registers

  REMORA_AVX2 static __m256 load_weights(const uint16_t* w, int64_t left) {
    __m128i bits;
    if (left >= 8) {
      bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    } else {  // the row's last < 8 weights, zero-extended (AVX2 has no 16-bit masked load)
      uint16_t last[8] = {};
      std::memcpy(last, w, left * sizeof(uint16_t));
      bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(last));
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
  }
  REMORA_AVX2 static float reduce(__m256 v) {  // a fixed pairwise order
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps(half, half, 1)));
  }
  template <int... R>
  REMORA_AVX2 static void tile(std::integer_sequence<int, R...>, const float* x, int64_t padded,
                               const uint16_t* w, int64_t in, float* sums) {
    __m256 acc[] = {((void)R, _mm256_setzero_ps())...};
    for (int64_t i = 0; i < in; i += 8) {
      const __m256 weights = load_weights(w + i, in - i);
      ((acc[R] = _mm256_fmadd_ps(weights, _mm256_loadu_ps(x + R * padded + i), acc[R])), ...);
    }
    ((sums[R] = reduce(acc[R])), ...);
  }
};

template <class Kernel, int R>
void tile(const typename Kernel::Input* x, int64_t padded, const uint16_t* w, int64_t in, float* sums) {
  Kernel::tile(std::make_integer_sequence<int, R>(), x, padded, w, in, sums);
}

// tiles[R - 1] for every tile a kernel has (the last rows of x make a smaller one).
template <class Kernel, int... R>
constexpr std::array<TileFn<typename Kernel::Input>, sizeof...(R)> tile_table(std::integer_sequence<int, R...>) {
  return {&tile<Kernel, R + 1>...};
}

// y [rows, out] = x [rows, in] W^T + b, x given as bf16 bits.
template <class Kernel>
void project(const uint16_t* x_bits, int64_t rows, const uint16_t* w, int64_t in, int64_t out, const float* bias,
             c10::BFloat16* y) {
  using Input = typename Kernel::Input;
  static constexpr auto tiles = tile_table<Kernel>(std::make_integer_sequence<int, Kernel::kRows>());
  // x in the kernel's input type (bf16 -> fp32 is exact), each row zero-padded to whole vectors.
  const int64_t padded = (in + kPad - 1) / kPad * kPad;
  std::vector<Input> x(rows * padded, Input(0));
  for (int64_t b = 0; b < rows; ++b) {
    for (int64_t i = 0; i < in; ++i) {
      const uint16_t bits = x_bits[b * in + i];
      if constexpr (std::is_same_v<Input, float>) {
        x[b * padded + i] = static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits()));
      } else {
        x[b * padded + i] = bits;
      }
    }
  }
  const int64_t row_work = in * int64_t(sizeof(uint16_t)) * rows;
  parallel_for(0, out, std::max<int64_t>(1, kBytesPerTask / row_work), [&](int64_t begin, int64_t end) {
    float sums[Kernel::kRows];
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t b0 = 0; b0 < rows; b0 += Kernel::kRows) {
        const int64_t count = std::min<int64_t>(Kernel::kRows, rows - b0);
        tiles[count - 1](x.data() + b0 * padded, padded, w + o * in, in, sums);
        for (int64_t b = 0; b < count; ++b) {
          y[(b0 + b) * out + o] = c10::BFloat16(bias ? sums[b] + bias[o] : sums[b]);
        }
      }
    }
  });
}
#endif

DecodeIsa detect_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    return __builtin_cpu_supports("avx512bf16") ? DecodeIsa::kAvx512Bf16 : DecodeIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DecodeIsa::kAvx2;
#endif
  return DecodeIsa::kNone;
}

}  // namespace

DecodeIsa decode_isa() {
  static const DecodeIsa isa = detect_isa();
  return isa;
}

bool decode_linear_applies(const at::Tensor& x, const at::Tensor& weight) {
  return decode_isa() != DecodeIsa::kNone && x.dim() >= 2 && x.size(-2) == 1 && x.device().is_cpu() &&
         x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 && weight.dim() == 2 &&
         weight.is_contiguous() && weight.size(1) == x.size(-1) &&
         !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()));
}

at::Tensor decode_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, DecodeIsa isa) {
  if (isa == DecodeIsa::kNone) return at::linear(x, weight, bias);
  TORCH_CHECK(static_cast<int>(isa) <= static_cast<int>(decode_isa()),
              "decode_linear: this CPU lacks the instruction set asked for");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 && weight.is_contiguous() &&
                  weight.dim() == 2 && x.size(-1) == weight.size(1),
              "decode_linear: expected bf16 x [..., ", weight.size(-1), "] and a contiguous bf16 weight");
  RECORD_FUNCTION("remora::decode_linear", std::vector<c10::IValue>({x, weight}));  // named in profiles
  const int64_t in = weight.size(1), out = weight.size(0);
  const at::Tensor flat = x.reshape({-1, in}).contiguous();
  const int64_t rows = flat.size(0);
  std::vector<float> bias_values;
  if (bias.defined()) {
    const at::Tensor b32 = bias.to(at::kFloat).contiguous();
    bias_values.assign(b32.data_ptr<float>(), b32.data_ptr<float>() + out);
  }
  at::Tensor y = at::empty({rows, out}, x.options());
#if defined(__x86_64__)
  const auto* x_bits = reinterpret_cast<const uint16_t*>(flat.data_ptr<at::BFloat16>());
  const auto* w = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
  const float* b = bias_values.empty() ? nullptr : bias_values.data();
  auto* y_bits = y.data_ptr<at::BFloat16>();
  switch (isa) {
    case DecodeIsa::kAvx512Bf16: project<Avx512Bf16>(x_bits, rows, w, in, out, b, y_bits); break;
    case DecodeIsa::kAvx512: project<Avx512>(x_bits, rows, w, in, out, b, y_bits); break;
    default: project<Avx2>(x_bits, rows, w, in, out, b, y_bits); break;
  }
#endif
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out;
  return y.view(shape);
}

}  // namespace remora
