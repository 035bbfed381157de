// What the process has used so far, for summaries and benchmarks.
#pragma once

#include <sys/resource.h>

namespace remora {

// Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB).
inline double peak_resident_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

}  // namespace remora
