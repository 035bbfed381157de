// REMORA_PROFILE: LibTorch's legacy CPU profiler with input shapes, written as a Chrome trace.
#include "cli/profile_trace.h"

#include <torch/csrc/autograd/profiler_legacy.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

namespace remora {
namespace {

namespace profiler = torch::autograd::profiler;

// One complete event per op from the profiler's push and pop records, matched by their handle as
// LibTorch's own writer matches them. Times in µs from the profiler's start mark.
nlohmann::json trace_events(const profiler::thread_event_lists& lists) {
  using profiler::EventKind;
  const profiler::LegacyEvent* start = nullptr;
  std::unordered_map<uint64_t, const profiler::LegacyEvent*> open;
  nlohmann::json events = nlohmann::json::array();
  for (const auto& list : lists) {
    for (const auto& e : list) {
      if (!start && e.kind() == EventKind::Mark && std::string(e.name()) == "__start_profile") start = &e;
    }
  }
  if (!start) return events;
  for (const auto& list : lists) {
    for (const auto& e : list) {
      if (e.kind() == EventKind::PushRange) {
        open[e.handle()] = &e;
      } else if (e.kind() == EventKind::PopRange) {
        const auto found = open.find(e.handle());
        if (found == open.end()) continue;
        const profiler::LegacyEvent& begin = *found->second;
        nlohmann::json event = {{"name", begin.name()}, {"ph", "X"}, {"ts", start->cpuElapsedUs(begin)},
                                {"dur", begin.cpuElapsedUs(e)}, {"tid", begin.threadId()},
                                {"pid", "CPU Functions"}, {"args", nlohmann::json::object()}};
        auto shapes = begin.shapes();
        if (!shapes.empty()) event["args"]["Input Dims"] = std::move(shapes);
        events.push_back(std::move(event));
        open.erase(found);
      }
    }
  }
  return events;
}

// Profiles from construction to destruction (also when `timed` throws), then writes the trace.
class ShapeProfile {
 public:
  explicit ShapeProfile(std::string path) : path_(std::move(path)) {
    profiler::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(
        torch::profiler::impl::ProfilerState::CPU, /*report_input_shapes=*/true));
  }
  ~ShapeProfile() {
    const nlohmann::json events = trace_events(profiler::disableProfilerLegacy());
    std::ofstream out(path_);
    out << events.dump() << "\n";
    if (!out.flush()) std::cerr << "remora: warning: could not write the REMORA_PROFILE trace " << path_ << "\n";
  }
  ShapeProfile(const ShapeProfile&) = delete;
  ShapeProfile& operator=(const ShapeProfile&) = delete;

 private:
  std::string path_;
};

}  // namespace

void profiled(const std::function<void()>& timed) {
  const char* path = std::getenv("REMORA_PROFILE");
  if (!path) return timed();
  ShapeProfile profile(path);
  timed();
}

}  // namespace remora
