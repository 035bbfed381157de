// jemalloc serves every allocation of the remora executable, LibTorch's tensors included.
#include "cli/allocator.h"

#include <jemalloc/jemalloc.h>

#include <sys/types.h>  // ssize_t, the type of the decay options

// Why jemalloc: with glibc's malloc, the heap a training step leaves behind was 20-100 MiB larger
// than the step's live tensors (holes between blocks of many sizes freed in a different order than
// they were made); jemalloc's size classes keep that small (ReMix peak ~600 -> ~500 MiB at the
// bench/train_speed.sh shape). Why no decay: by default jemalloc hands pages freed for 10 s back to the
// kernel, and each step then faults its activations in again and the kernel zeroes them (with glibc's
// returned mmap blocks that was three quarters of a ReMix step on a 2-core machine). Freed pages stay
// with the process for the next step instead, as PyTorch's CUDA caching allocator keeps them.
// jemalloc reads this symbol (declared extern "C" by its header) before main; MALLOC_CONF in the
// environment still overrides it.
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";

namespace remora {
namespace {

template <typename T>
T read_option(const char* name, T fallback) {
  T value = fallback;
  size_t size = sizeof(value);
  return mallctl(name, &value, &size, nullptr, 0) == 0 ? value : fallback;
}

}  // namespace

std::string allocator_description() {
  const char* version = read_option<const char*>("version", "?");
  return std::string("jemalloc ") + version + ", dirty_decay_ms " +
         std::to_string(read_option<ssize_t>("opt.dirty_decay_ms", 0)) + ", muzzy_decay_ms " +
         std::to_string(read_option<ssize_t>("opt.muzzy_decay_ms", 0));
}

}  // namespace remora
