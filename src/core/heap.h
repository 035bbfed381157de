// How the process's heap hands memory back to the kernel: not between training steps.
#pragma once

#include <malloc.h>

namespace remora {

// glibc serves every block over 32 MiB (logits, attention scores, their gradients) with its own
// mmap and unmaps it on free, so each step faults all of those pages in again and the kernel zeroes
// them: measured, that was three quarters of a ReMix step's time on 2 cores (bench/train_speed.sh).
// Kept in the heap, freed blocks are reused by the next step as they are. The cost is that memory
// freed after a peak stays with the process (as PyTorch's CUDA caching allocator keeps it).
inline void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);  // only blocks of 1 GiB and more get their own mapping
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // and the heap's free top is returned past 1 GiB only
}

}  // namespace remora
