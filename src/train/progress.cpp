// Progress bar and plain progress lines.
#include "train/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>

namespace remora {
namespace {

std::string clock_text(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof(text), "%02lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return text;
}

}  // namespace

ProgressDisplay::ProgressDisplay(int64_t total_steps)
    : total_(total_steps), terminal_(::isatty(STDERR_FILENO) == 1) {}

void ProgressDisplay::update(int64_t step, double loss, double lr, double tokens_per_second, double elapsed) {
  const double eta = step > 0 ? elapsed / step * (total_ - step) : 0;
  char figures[160];
  std::snprintf(figures, sizeof(figures), "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | %s elapsed, ETA %s",
                static_cast<long long>(step), static_cast<long long>(total_), loss, lr, tokens_per_second,
                clock_text(elapsed).c_str(), clock_text(eta).c_str());
  if (!terminal_) {
    std::cerr << figures << "\n";
    return;
  }
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * step / total_) : kWidth;
  std::cerr << "\r[" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] " << figures << "\x1b[K"
            << std::flush;
  bar_drawn_ = true;
}

void ProgressDisplay::message(const std::string& text) {
  if (bar_drawn_) std::cerr << "\r\x1b[K";
  std::cerr << text << "\n";
  bar_drawn_ = false;
}

void ProgressDisplay::finish() {
  if (bar_drawn_) std::cerr << "\n";
  bar_drawn_ = false;
}

}  // namespace remora
