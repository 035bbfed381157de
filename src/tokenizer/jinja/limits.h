// Bounds on what rendering a template may cost, so that a hostile chat template ends in an Error
// instead of exhausting memory, time or the stack (README: "Limits").
#pragma once

#include <cstdint>

namespace remora::jinja {

#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
// Rendered output and any single string value.
constexpr uint64_t kMaxStringBytes = uint64_t{16} << 20;
// Elements of one list (range(), +, append).
constexpr uint64_t kMaxListItems = uint64_t{1} << 20;
// Expressions evaluated and statements run in one render: loops nested over range(100000) stop here.
constexpr int64_t kMaxRenderSteps = 5'000'000;
#else
// The fuzz build (fuzz/CMakeLists.txt) stops renders 100 times sooner: a fuzzed template that runs
// to a limit then costs milliseconds instead of seconds under ASan, and the limit checks run as often.
constexpr uint64_t kMaxStringBytes = uint64_t{160} << 10;
constexpr uint64_t kMaxListItems = uint64_t{10} << 10;
constexpr int64_t kMaxRenderSteps = 50'000;
#endif
// Nesting of values printed or compared (a list that contains itself would recurse forever).
constexpr int kMaxValueDepth = 256;

}  // namespace remora::jinja
