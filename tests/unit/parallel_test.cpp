// remora::parallel_for: splits a kernel's rows over the intra-op threads (so the build has OpenMP),
// and keeps them on the calling thread while a KernelsOnThisThread is alive there.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "core/parallel.h"

namespace remora {
namespace {

struct Chunks {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::set<std::thread::id> threads;
};

Chunks run(int64_t end, int64_t grain) {
  Chunks chunks;
  std::mutex mutex;
  parallel_for(0, end, grain, [&](int64_t begin, int64_t stop) {
    const std::lock_guard<std::mutex> lock(mutex);
    chunks.ranges.emplace_back(begin, stop);
    chunks.threads.insert(std::this_thread::get_id());
  });
  return chunks;
}

// Restores the process's intra-op thread count after each test.
class ParallelFor : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(2); }
  void TearDown() override { at::set_num_threads(threads_); }

 private:
  int threads_ = at::get_num_threads();
};

TEST_F(ParallelFor, SplitsTheRangeOverTheIntraOpThreads) {
  const Chunks chunks = run(1000, 10);
  ASSERT_EQ(chunks.ranges.size(), 2u) << "one chunk: is remora compiled without OpenMP?";
  EXPECT_EQ(chunks.threads.size(), 2u);
  int64_t covered = 0;
  for (const auto& [begin, end] : chunks.ranges) covered += end - begin;
  EXPECT_EQ(covered, 1000);
  // A range no longer than one grain stays whole.
  EXPECT_EQ(run(10, 10).ranges.size(), 1u);
}

TEST_F(ParallelFor, StaysOnTheCallingThreadWhileASwitchIsAlive) {
  {
    const KernelsOnThisThread serial;
    const KernelsOnThisThread nested;  // a second one changes nothing, and its end does not end the first
    const Chunks chunks = run(1000, 10);
    ASSERT_EQ(chunks.ranges.size(), 1u);
    EXPECT_EQ(chunks.ranges[0], std::make_pair(int64_t{0}, int64_t{1000}));
    EXPECT_EQ(*chunks.threads.begin(), std::this_thread::get_id());
  }
  EXPECT_FALSE(kernels_stay_on_this_thread());
  EXPECT_EQ(run(1000, 10).ranges.size(), 2u);
  // The switch is the calling thread's only: another thread still splits.
  const KernelsOnThisThread serial;
  size_t elsewhere = 0;
  std::thread other([&] {
    at::set_num_threads(2);
    elsewhere = run(1000, 10).ranges.size();
  });
  other.join();
  EXPECT_EQ(elsewhere, 2u);
}

}  // namespace
}  // namespace remora
