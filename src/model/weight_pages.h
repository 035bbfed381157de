// Transparent huge pages for the frozen weights that decode streams from memory every step.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace remora {

// Moves the CPU tensors (of one dtype, contents not kept: call it before loading them) into one
// buffer whose memory the kernel is asked (madvise MADV_HUGEPAGE) to back with 2 MiB pages before
// anything touches it. Why: a batch-1 decode step reads every weight once, and with 4 KiB pages one
// core streamed 14 GB/s, with 2 MiB pages 27 (measured on the 2-core Zen 4 machine). Separate
// allocations cannot get there: the allocator writes a header into each, and a 2 MiB range with one
// 4 KiB page already in place stays in 4 KiB pages. Best effort: kernels without THP, or with it set
// to `never`, ignore the advice. Tensors of another dtype or device are left where they are.
void place_in_huge_pages(const std::vector<at::Tensor>& tensors);

}  // namespace remora
