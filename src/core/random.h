// Deterministic shuffling that is the same on every platform (std::shuffle's algorithm is not).
#pragma once

#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace remora {

// 0..n-1 in a Fisher-Yates order drawn from mt19937_64(seed), whose output the standard fixes.
inline std::vector<size_t> shuffled_indices(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 engine(seed);
  for (size_t i = n; i > 1; --i) {
    const size_t j = static_cast<size_t>(engine() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

}  // namespace remora
