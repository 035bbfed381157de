// What the process has used so far, for summaries and benchmarks.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <string>
#include <thread>

#include "core/error.h"

namespace remora {

// Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB).
inline double peak_resident_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// The machine's cores: the default thread count and its cap (more threads than cores only slow
// LibTorch down, and a mistyped 100000 would try to start them all).
inline int64_t machine_cores() { return std::max(1u, std::thread::hardware_concurrency()); }

// Throws Error naming `what` unless 1 <= threads <= machine_cores().
inline void check_thread_count(int64_t threads, const std::string& what) {
  if (threads < 1) fail(what, ": expected at least 1, got ", threads);
  if (threads > machine_cores()) fail(what, ": ", threads, " is more than this machine's ", machine_cores(), " cores");
}

}  // namespace remora
