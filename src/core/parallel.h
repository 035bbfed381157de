// at::parallel_for for remora's kernels, with a switch that keeps them on the calling thread.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace remora {

// The calling thread's switch (off by default).
inline bool& kernels_stay_on_this_thread() {
  static thread_local bool stay = false;
  return stay;
}

// While alive, the calling thread runs remora's kernels without parallel regions (LibTorch's own ops
// are unaffected). Why: the server's engine thread shares the cores with its HTTP threads, and there
// the kernels' small per-step regions waited on their barrier (bench/serve_bench.sh, one client:
// 98-104 output tokens/s with them against 130-149 without).
class KernelsOnThisThread {
 public:
  KernelsOnThisThread() : previous_(kernels_stay_on_this_thread()) { kernels_stay_on_this_thread() = true; }
  ~KernelsOnThisThread() { kernels_stay_on_this_thread() = previous_; }
  KernelsOnThisThread(const KernelsOnThisThread&) = delete;
  KernelsOnThisThread& operator=(const KernelsOnThisThread&) = delete;

 private:
  bool previous_;
};

// f(begin, end) over [begin, end) in chunks of at least `grain`, split over the intra-op threads
// unless the switch above is on. remora is compiled with OpenMP because at::parallel_for is a header
// template: without it, the call runs f(begin, end) on the calling thread whatever the thread count.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, kernels_stay_on_this_thread() ? std::max<int64_t>(grain, end - begin) : grain, f);
}

}  // namespace remora
