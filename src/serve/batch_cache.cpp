// Re-laying a batch's KV cache when rows join or leave.
#include "serve/batch_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"

namespace remora {

KVCache rebuild_cache(const std::vector<CachedRow>& rows, int64_t reserve) {
  REMORA_CHECK(!rows.empty() && reserve >= 0, "rebuild_cache: no rows");
  int64_t longest = 0;
  for (const auto& row : rows) longest = std::max(longest, row.length);
  const KVCache& first = *rows.front().source;
  const int64_t layers = static_cast<int64_t>(first.keys.size());
  const int64_t B = static_cast<int64_t>(rows.size());
  KVCache cache(layers, longest + reserve);
  cache.length = longest;
  cache.valid = at::zeros({B, cache.capacity}, first.valid.options());
  for (int64_t layer = 0; layer < layers; ++layer) {
    const at::Tensor& keys = first.keys[layer];
    // Columns outside a row's own are masked out; zeros keep them finite.
    cache.keys[layer] = at::zeros({B, keys.size(1), cache.capacity, keys.size(3)}, keys.options());
    cache.values[layer] = at::zeros_like(cache.keys[layer]);
  }
  for (int64_t b = 0; b < B; ++b) {
    const CachedRow& row = rows[b];
    const int64_t from = row.source->length - row.length, to = longest - row.length;
    REMORA_CHECK(from >= 0, "rebuild_cache: row ", b, " claims more positions than its cache holds");
    cache.valid[b].narrow(0, to, row.length).fill_(true);
    cache.row_starts.push_back(to);
    for (int64_t layer = 0; layer < layers; ++layer) {
      cache.keys[layer][b].narrow(1, to, row.length).copy_(row.source->keys[layer][row.row].narrow(1, from, row.length));
      cache.values[layer][b].narrow(1, to, row.length).copy_(row.source->values[layer][row.row].narrow(1, from, row.length));
    }
  }
  return cache;
}

}  // namespace remora
