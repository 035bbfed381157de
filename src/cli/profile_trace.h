// REMORA_PROFILE: a Chrome trace of every op a run executes, with each op's input shapes.
#pragma once

#include <functional>

namespace remora {

// Runs `timed`; with REMORA_PROFILE=trace.json set, records every op it runs into that file (Chrome's
// trace format, as torch.profiler exports it: one complete event per op, its input shapes under
// args["Input Dims"]), so that bench/profile_ops.py can sum a step's time per op or per op and shape.
void profiled(const std::function<void()>& timed);

}  // namespace remora
