// The bf16 projection of one-position decode steps: a tile of weight rows streams once past every
// row of x, accumulating in fp32 lanes (AVX-512 BF16 dot products, AVX-512 or AVX2 FMAs, chosen at run time).
#include "model/decode_linear.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn about it where they are
// inlined (GCC bug 105593); the warning is about the header, not this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace remora {
namespace {

// Weight rows prefetched this far ahead of the rows being read: without it one core streams ~10 GB/s
// of a 45 MB model, with it ~35 GB/s (the hardware prefetcher does not follow four 1 KiB rows).
constexpr int64_t kPrefetchRows = 16;
// Weight bytes x rows of x per task: a parallel region's wake-up and barrier cost more than one core
// streaming a smaller matrix (measured on the 2-core machine: a 512 x 512 step on one core 15 µs).
constexpr int64_t kBytesPerTask = int64_t{1} << 20;
constexpr int64_t kPad = 32;  // x rows are padded with zeros to whole vectors of the widest version

// One tile: sums[b * O + o] = x[b] . w[o] for O weight rows (stride `in`) and R rows of x (stride
// `padded`, zero past `in`). Every sum is accumulated lane by lane in the same order, then reduced in a
// fixed order, whatever O and R are: that is what makes a row's bits independent of its neighbours.
// The packs A (accumulators: row A / O, weight row A % O), O and R index every array by constants, so
// the accumulators stay in registers (GCC keeps loop-indexed arrays of vectors in memory).
template <class Input>
using TileFn = void (*)(const Input* x, int64_t padded, const uint16_t* w, int64_t in, float* sums);

#if defined(__x86_64__)
#define REMORA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define REMORA_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define REMORA_AVX2 __attribute__((target("avx2,fma")))

// Lines of the rows kPrefetchRows ahead, so that they arrive while this tile computes.
template <int... O>
inline void prefetch_ahead(const uint16_t* w, int64_t in, int64_t i, std::integer_sequence<int, O...>) {
  (_mm_prefetch(reinterpret_cast<const char*>(w + (kPrefetchRows + O) * in + i), _MM_HINT_T0), ...);
}

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
  static constexpr int kOutputs = 4, kRows = 6;  // 24 accumulators + 4 weights + 1 row of the 32 registers

  template <int... A, int... O, int... R>
  REMORA_AVX512_BF16 static void tile(std::integer_sequence<int, A...>, std::integer_sequence<int, O...> outputs,
                                      std::integer_sequence<int, R...>, const uint16_t* x, int64_t padded,
                                      const uint16_t* w, int64_t in, float* sums) {
    constexpr int kOutputs = sizeof...(O);
    __m512 acc[] = {((void)A, _mm512_setzero_ps())...};
    int64_t i = 0;
    for (; i + 32 <= in; i += 32) {  // masked loads only for the tail: they are slower (Zen 4)
      prefetch_ahead(w, in, i, outputs);
      const __m512bh weights[] = {(__m512bh)_mm512_loadu_si512(w + O * in + i)...};
      const __m512bh rows[] = {(__m512bh)_mm512_loadu_si512(x + R * padded + i)...};
      ((acc[A] = _mm512_dpbf16_ps(acc[A], rows[A / kOutputs], weights[A % kOutputs])), ...);
    }
    if (i < in) {
      const __mmask32 mask = __mmask32((1u << (in - i)) - 1);
      const __m512bh weights[] = {(__m512bh)_mm512_maskz_loadu_epi16(mask, w + O * in + i)...};
      const __m512bh rows[] = {(__m512bh)_mm512_loadu_si512(x + R * padded + i)...};
      ((acc[A] = _mm512_dpbf16_ps(acc[A], rows[A / kOutputs], weights[A % kOutputs])), ...);
    }
    ((sums[A] = reduce512(acc[A])), ...);
  }
};

// AVX-512 F/BW: weights widened to fp32 (exact: the bits move up 16), fp32 FMAs.
struct Avx512 {
  using Input = float;
  static constexpr int kOutputs = 4, kRows = 4;  // 16 accumulators + 4 weights + 1 row of the 32 registers

  REMORA_AVX512 static __m512 widen(__m256i bits) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  }
  template <int... A, int... O, int... R>
  REMORA_AVX512 static void tile(std::integer_sequence<int, A...>, std::integer_sequence<int, O...> outputs,
                                 std::integer_sequence<int, R...>, const float* x, int64_t padded,
                                 const uint16_t* w, int64_t in, float* sums) {
    constexpr int kOutputs = sizeof...(O);
    __m512 acc[] = {((void)A, _mm512_setzero_ps())...};
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
      prefetch_ahead(w, in, i, outputs);
      const __m512 weights[] = {widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + O * in + i)))...};
      const __m512 rows[] = {_mm512_loadu_ps(x + R * padded + i)...};
      ((acc[A] = _mm512_fmadd_ps(weights[A % kOutputs], rows[A / kOutputs], acc[A])), ...);
    }
    if (i < in) {
      const __mmask16 mask = __mmask16((1u << (in - i)) - 1);
      const __m512 weights[] = {widen(_mm256_maskz_loadu_epi16(mask, w + O * in + i))...};
      const __m512 rows[] = {_mm512_loadu_ps(x + R * padded + i)...};
      ((acc[A] = _mm512_fmadd_ps(weights[A % kOutputs], rows[A / kOutputs], acc[A])), ...);
    }
    ((sums[A] = reduce512(acc[A])), ...);
  }
};

// AVX2 with FMA: as Avx512, 8 lanes.
struct Avx2 {
  using Input = float;
  static constexpr int kOutputs = 4, kRows = 2;  // 8 accumulators + 4 weights + 1 row of the 16 registers

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
  template <int... A, int... O, int... R>
  REMORA_AVX2 static void tile(std::integer_sequence<int, A...>, std::integer_sequence<int, O...> outputs,
                               std::integer_sequence<int, R...>, const float* x, int64_t padded,
                               const uint16_t* w, int64_t in, float* sums) {
    constexpr int kOutputs = sizeof...(O);
    __m256 acc[] = {((void)A, _mm256_setzero_ps())...};
    for (int64_t i = 0; i < in; i += 8) {
      prefetch_ahead(w, in, i, outputs);
      const __m256 weights[] = {load_weights(w + O * in + i, in - i)...};
      const __m256 rows[] = {_mm256_loadu_ps(x + R * padded + i)...};
      ((acc[A] = _mm256_fmadd_ps(weights[A % kOutputs], rows[A / kOutputs], acc[A])), ...);
    }
    ((sums[A] = reduce(acc[A])), ...);
  }
};

template <class Kernel, int O, int R>
void tile(const typename Kernel::Input* x, int64_t padded, const uint16_t* w, int64_t in, float* sums) {
  Kernel::tile(std::make_integer_sequence<int, O * R>(), std::make_integer_sequence<int, O>(),
               std::make_integer_sequence<int, R>(), x, padded, w, in, sums);
}

// tiles[O - 1][R - 1] for every tile shape a kernel has (the last tiles of a matrix are smaller).
template <class Kernel, int O, int... R>
constexpr std::array<TileFn<typename Kernel::Input>, sizeof...(R)> row_tiles(std::integer_sequence<int, R...>) {
  return {&tile<Kernel, O, R + 1>...};
}
template <class Kernel, int... O>
constexpr auto tile_table(std::integer_sequence<int, O...>) {
  return std::array<std::array<TileFn<typename Kernel::Input>, Kernel::kRows>, sizeof...(O)>{
      row_tiles<Kernel, O + 1>(std::make_integer_sequence<int, Kernel::kRows>())...};
}

// y [rows, out] = x [rows, in] W^T + b, x given as bf16 bits.
template <class Kernel>
void project(const uint16_t* x_bits, int64_t rows, const uint16_t* w, int64_t in, int64_t out, const float* bias,
             c10::BFloat16* y) {
  using Input = typename Kernel::Input;
  static constexpr auto tiles = tile_table<Kernel>(std::make_integer_sequence<int, Kernel::kOutputs>());
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
  const int64_t tile_count = (out + Kernel::kOutputs - 1) / Kernel::kOutputs;
  const int64_t tile_work = Kernel::kOutputs * in * int64_t(sizeof(uint16_t)) * rows;
  at::parallel_for(0, tile_count, std::max<int64_t>(1, kBytesPerTask / tile_work), [&](int64_t begin, int64_t end) {
    float sums[Kernel::kOutputs * Kernel::kRows];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t first = t * Kernel::kOutputs, outputs = std::min<int64_t>(Kernel::kOutputs, out - first);
      for (int64_t b0 = 0; b0 < rows; b0 += Kernel::kRows) {
        const int64_t count = std::min<int64_t>(Kernel::kRows, rows - b0);
        tiles[outputs - 1][count - 1](x.data() + b0 * padded, padded, w + first * in, in, sums);
        for (int64_t b = 0; b < count; ++b) {
          for (int64_t o = 0; o < outputs; ++o) {
            const float sum = sums[b * outputs + o];
            y[(b0 + b) * out + first + o] = c10::BFloat16(bias ? sum + bias[first + o] : sum);
          }
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
