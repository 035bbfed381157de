// remora's one exception type: a message that names the file, line, field or tensor at fault.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace remora {

// Thrown for every user-facing failure (bad input, missing file, unsupported feature). The CLI prints
// what() on one line and exits non-zero, so the message must say where and what was expected.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Builds a message from streamable parts: fail("file ", path, ": expected ", n, " bytes").
template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  throw Error(out.str());
}

// Throws Error with the given parts unless condition holds.
#define REMORA_CHECK(condition, ...)      \
  do {                                    \
    if (!(condition)) ::remora::fail(__VA_ARGS__); \
  } while (0)

}  // namespace remora
