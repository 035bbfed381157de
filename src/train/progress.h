// What the user sees during training: a live bar on a terminal, plain lines otherwise.
#pragma once

#include <cstdint>
#include <string>

namespace remora {

class ProgressDisplay {
 public:
  explicit ProgressDisplay(int64_t total_steps);
  // One step's figures; redraws the bar (terminal) or prints a line (pipe/file).
  void update(int64_t step, double loss, double lr, double tokens_per_second, double elapsed_seconds);
  // A message on its own line, not overwritten by the bar.
  void message(const std::string& text);
  void finish();

 private:
  int64_t total_;
  bool terminal_;
  bool bar_drawn_ = false;
};

}  // namespace remora
