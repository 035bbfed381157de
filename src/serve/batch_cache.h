// The KV cache of a continuously changing batch: rows join with a prefilled prompt and leave when done.
#pragma once

#include <vector>

#include "model/kv_cache.h"

namespace remora {

// One row to place in a rebuilt cache: `length` real positions, ending at column `source.length`
// of row `row` in `source`.
struct CachedRow {
  const KVCache* source = nullptr;
  int64_t row = 0;
  int64_t length = 0;
};

// Lays `rows` out on one timeline, every row ending at the same column (as left padding does), so
// the decoder's shared cache position and validity mask work unchanged: positions count each row's
// own tokens, and a row attends only to its own valid columns (row_starts). The result has room for `reserve`
// further decode steps and nothing more, so its size is rows x (longest row + reserve).
KVCache rebuild_cache(const std::vector<CachedRow>& rows, int64_t reserve);

// Positions a cache of `rows` rows and `columns` columns holds (the unit of the memory budget).
inline int64_t cache_positions(int64_t rows, int64_t columns) { return rows * columns; }

}  // namespace remora
