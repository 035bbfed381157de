// Attention of one-position decode steps over the KV cache.
#include "model/decode_attention.h"

#include <ATen/record_function.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "core/vector_math.h"

namespace remora {
namespace {

// One KV head's cached positions of one row: position s's key at keys + s * key_stride.
struct HeadView {
  const at::BFloat16* keys;
  int64_t key_stride;
  const at::BFloat16* values;
  int64_t value_stride;
  int64_t dim;
};

// mixed = softmax(scale q k^T + mask) v over positions [first, S), all in fp32. Compiled for AVX-512,
// AVX2 and the baseline, one chosen when the program loads: the same operations in the same order,
// though the versions with FMA fuse some products and sums, so their bits can differ from the
// baseline's (never from one row to another on one machine).
__attribute__((target_clones("avx512f", "avx2", "default"))) void attend(const HeadView& head, const float* query,
                                                                          const at::BFloat16* mask, int64_t first,
                                                                          int64_t S, float scale, float* scores,
                                                                          float* mixed) {
  const int64_t Dh = head.dim;
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t s = first; s < S; ++s) {
    const at::BFloat16* key = head.keys + s * head.key_stride;
    float partial[kLanes] = {};  // independent partial sums: the compiler vectorises them
    int64_t d = 0;
    for (; d + kLanes <= Dh; d += kLanes) {
      for (int64_t lane = 0; lane < kLanes; ++lane) partial[lane] += query[d + lane] * float(key[d + lane]);
    }
    for (; d < Dh; ++d) partial[d % kLanes] += query[d] * float(key[d]);
    scores[s] = sum_lanes(partial) * scale + float(mask[s]);
    max_score = std::max(max_score, scores[s]);
  }
  for (int64_t d = 0; d < Dh; ++d) mixed[d] = 0;
  float total = 0;
  for (int64_t s = first; s < S; ++s) {
    const float p = std::exp(scores[s] - max_score);
    total += p;
    const at::BFloat16* value = head.values + s * head.value_stride;
    for (int64_t d = 0; d < Dh; ++d) mixed[d] += p * float(value[d]);
  }
  for (int64_t d = 0; d < Dh; ++d) mixed[d] /= total;
}

}  // namespace

bool decode_attention_applies(const at::Tensor& q, const at::Tensor& keys) {
  return q.dim() == 4 && q.size(2) == 1 && keys.dim() == 4 && q.device().is_cpu() && keys.device().is_cpu() &&
         q.scalar_type() == at::kBFloat16 && keys.scalar_type() == at::kBFloat16 && keys.stride(3) == 1 &&
         !(at::GradMode::is_enabled() && (q.requires_grad() || keys.requires_grad()));
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                            const at::Tensor& bias, const std::vector<int64_t>& row_starts, double scale) {
  const int64_t B = q.size(0), H = q.size(1), Dh = q.size(3), Hkv = keys.size(1), S = keys.size(2);
  TORCH_CHECK(decode_attention_applies(q, keys) && values.sizes() == keys.sizes() && values.stride(3) == 1 &&
                  values.scalar_type() == at::kBFloat16 && keys.size(0) == B && keys.size(3) == Dh && H % Hkv == 0 &&
                  bias.numel() == B * S && bias.scalar_type() == at::kBFloat16 &&
                  (row_starts.empty() || static_cast<int64_t>(row_starts.size()) == B),
              "decode_attention: expected bf16 q [B, H, 1, Dh], keys and values [B, Hkv, S, Dh], bias [B, 1, 1, 1, S]");
  RECORD_FUNCTION("remora::decode_attention", std::vector<c10::IValue>({q, keys}));  // named in profiles
  const int64_t G = H / Hkv;
  const at::Tensor mask = bias.contiguous();  // [B, 1, 1, 1, S]: row b's S columns at b * S
  at::Tensor out = at::empty({B, 1, H * Dh}, q.options());
  const auto* q_data = q.data_ptr<at::BFloat16>();
  const auto* k_data = keys.data_ptr<at::BFloat16>();
  const auto* v_data = values.data_ptr<at::BFloat16>();
  const auto* mask_data = mask.data_ptr<at::BFloat16>();
  auto* out_data = out.data_ptr<at::BFloat16>();
  const float softmax_scale = static_cast<float>(scale);
  // One task per (row, query head). A parallel region only past ~2 M multiply-adds per thread, where
  // its wake-up and barrier are small beside the work: decode rows of a few hundred positions stay on
  // the calling thread. (The server's engine keeps every kernel on its thread: core/parallel.h.)
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 21) / std::max<int64_t>(1, S * Dh));
  parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> query(Dh), scores(S), mixed(Dh);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, h = task % H, kv = h / G;
      const int64_t first = row_starts.empty() ? 0 : row_starts[b];
      for (int64_t d = 0; d < Dh; ++d) query[d] = q_data[b * q.stride(0) + h * q.stride(1) + d * q.stride(3)];
      HeadView head{k_data + b * keys.stride(0) + kv * keys.stride(1), keys.stride(2),
                    v_data + b * values.stride(0) + kv * values.stride(1), values.stride(2), Dh};
      attend(head, query.data(), mask_data + b * S, first, S, softmax_scale, scores.data(), mixed.data());
      at::BFloat16* result = out_data + b * H * Dh + h * Dh;
      for (int64_t d = 0; d < Dh; ++d) result[d] = at::BFloat16(mixed[d]);
    }
  });
  return out;
}

}  // namespace remora
