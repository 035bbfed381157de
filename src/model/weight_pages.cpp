// Transparent huge pages for the frozen weights.
#include "model/weight_pages.h"

#include <ATen/ATen.h>
#include <sys/mman.h>

#include <cstdint>

namespace remora {

void place_in_huge_pages(const std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return;
  const at::TensorOptions options = tensors.front().options();
  if (!options.device().is_cpu()) return;
  constexpr int64_t kHugePage = int64_t{2} << 20, kAlign = 64;  // a cache line
  const int64_t element = static_cast<int64_t>(tensors.front().element_size());
  const auto placed = [&](const at::Tensor& t) {
    return t.defined() && t.options().dtype() == options.dtype() && t.device().is_cpu();
  };
  std::vector<int64_t> offsets;  // in elements, each tensor starting on a cache line
  int64_t end = 0;
  for (const at::Tensor& t : tensors) {
    offsets.push_back(end);
    if (placed(t)) end += (t.numel() * element + kAlign - 1) / kAlign * kAlign / element;
  }
  // Two spare huge pages: the tensors start on a huge-page boundary and the advice ends on one.
  at::Tensor buffer = at::empty({end + 2 * kHugePage / element}, options.requires_grad(false));
  const auto base = reinterpret_cast<uintptr_t>(buffer.data_ptr());
  const int64_t start = static_cast<int64_t>(((base + kHugePage - 1) & ~uintptr_t(kHugePage - 1)) - base) / element;
  const int64_t length = (end * element + kHugePage - 1) / kHugePage * kHugePage;
  madvise(reinterpret_cast<void*>(base + start * element), length, MADV_HUGEPAGE);  // advice only
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors.size(); ++i) {
    at::Tensor t = tensors[i];
    if (placed(t)) t.set_(buffer.storage(), start + offsets[i], t.sizes(), at::contiguous_strides(t.sizes()));
  }
}

}  // namespace remora
