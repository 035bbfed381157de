// Keys and values of past positions, so generation computes each new token once.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace remora {

// Pre-allocated per-layer key/value buffers [B, Hkv, S_max, Dh] plus the validity mask of every
// cached position [B, S_max] (false for padding). `length` positions are filled.
struct KVCache {
  std::vector<at::Tensor> keys;
  std::vector<at::Tensor> values;
  at::Tensor valid;  // [B, S_max] bool
  int64_t length = 0;
  int64_t capacity = 0;
  // Serving's ragged batch: each row's first valid column (its earlier columns are padding). When
  // set, attention runs row by row over those columns, so a row's result never depends on its
  // neighbours' lengths. Empty: one batched attention over all columns.
  std::vector<int64_t> row_starts;

  // Empty cache for `layers` layers and up to `capacity` positions.
  KVCache(int64_t layers, int64_t capacity) : keys(layers), values(layers), capacity(capacity) {}
};

}  // namespace remora
