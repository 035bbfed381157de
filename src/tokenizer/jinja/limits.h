// Bounds on what rendering a template may cost, so that a hostile chat template ends in an Error
// instead of exhausting memory, time or the stack (README: "Limits").
#pragma once

#include <cstdint>

namespace remora::jinja {

// Rendered output and any single string value.
constexpr uint64_t kMaxStringBytes = uint64_t{16} << 20;
// Elements of one list (range(), +, append).
constexpr uint64_t kMaxListItems = uint64_t{1} << 20;
// Expressions evaluated and statements run in one render: loops nested over range(100000) stop here.
constexpr int64_t kMaxRenderSteps = 5'000'000;
// Nesting of values printed or compared (a list that contains itself would recurse forever).
constexpr int kMaxValueDepth = 256;

}  // namespace remora::jinja
