// The process's allocator (jemalloc, linked into the remora executable) and how it is configured.
#pragma once

#include <string>

namespace remora {

// "jemalloc VERSION, dirty_decay_ms D, muzzy_decay_ms M", as jemalloc itself reports its options.
std::string allocator_description();

}  // namespace remora
