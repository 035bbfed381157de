// Epoch planning and collation.
#include "train/batching.h"

#include <algorithm>

#include "core/random.h"

namespace remora {

std::vector<std::vector<size_t>> plan_epoch(const std::vector<TrainingExample>& examples, int64_t batch_size,
                                            uint64_t seed, int64_t epoch) {
  const uint64_t epoch_seed = seed * 1000003ULL + static_cast<uint64_t>(epoch);
  std::vector<size_t> order = shuffled_indices(examples.size(), epoch_seed);
  const size_t window = static_cast<size_t>(batch_size) * 64;
  std::vector<std::vector<size_t>> batches;
  for (size_t start = 0; start < order.size(); start += window) {
    const auto first = order.begin() + start, last = order.begin() + std::min(order.size(), start + window);
    std::stable_sort(first, last, [&](size_t a, size_t b) { return examples[a].ids.size() > examples[b].ids.size(); });
    for (auto it = first; it < last; it += std::min<ptrdiff_t>(batch_size, last - it)) {
      batches.emplace_back(it, it + std::min<ptrdiff_t>(batch_size, last - it));
    }
  }
  std::vector<std::vector<size_t>> shuffled;
  for (size_t i : shuffled_indices(batches.size(), epoch_seed + 1)) shuffled.push_back(std::move(batches[i]));
  return shuffled;
}

Batch collate(const std::vector<TrainingExample>& examples, const std::vector<size_t>& indices, int64_t pad_id) {
  size_t longest = 0;
  for (size_t i : indices) longest = std::max(longest, examples[i].ids.size());
  const int64_t B = static_cast<int64_t>(indices.size()), T = static_cast<int64_t>(longest);
  Batch batch;
  batch.ids = at::full({B, T}, pad_id, at::kLong);
  batch.attention = at::zeros({B, T}, at::kLong);
  batch.target_mask = at::zeros({B, T}, at::kFloat);
  batch.routing_mask = at::zeros({B, T}, at::kBool);
  auto ids = batch.ids.accessor<int64_t, 2>();
  auto attention = batch.attention.accessor<int64_t, 2>();
  auto target = batch.target_mask.accessor<float, 2>();
  auto routing = batch.routing_mask.accessor<bool, 2>();
  for (int64_t row = 0; row < B; ++row) {
    const TrainingExample& example = examples[indices[row]];
    for (int64_t t = 0; t < routing_prefix_length(example); ++t) routing[row][t] = true;
    for (size_t t = 0; t < example.ids.size(); ++t) {
      ids[row][t] = example.ids[t];
      attention[row][t] = 1;
      target[row][t] = example.target[t];
      batch.target_tokens += example.target[t];
    }
  }
  return batch;
}

WorkerShare worker_share(const std::vector<TrainingExample>& examples, const std::vector<size_t>& indices,
                         int64_t pad_id, int64_t rank, int64_t workers) {
  WorkerShare share;
  const int64_t rows = static_cast<int64_t>(indices.size());
  auto boundary = [&](int64_t r) { return (r * rows + workers - 1) / workers; };  // ceil(r rows / workers)
  BatchPlacement& place = share.placement;
  place.first_row = boundary(rank);
  place.global_rows = rows;
  for (size_t i : indices) {
    place.global_tokens = std::max<int64_t>(place.global_tokens, static_cast<int64_t>(examples[i].ids.size()));
    for (const auto t : examples[i].target) share.global_target_tokens += t;
  }
  const std::vector<size_t> mine(indices.begin() + place.first_row, indices.begin() + boundary(rank + 1));
  if (!mine.empty()) {
    share.batch = collate(examples, mine, pad_id);
    return share;
  }
  // Every worker runs the same forward (the routers' statistics are summed across workers inside it),
  // so one without rows runs a row of padding: no token is real, so it adds nothing anywhere.
  place.first_row = 0;  // (any row's routing noise will do)
  share.batch.ids = at::full({1, 2}, pad_id, at::kLong);
  share.batch.attention = at::zeros({1, 2}, at::kLong);
  share.batch.target_mask = at::zeros({1, 2}, at::kFloat);
  share.batch.routing_mask = at::zeros({1, 2}, at::kBool);
  return share;
}

}  // namespace remora
