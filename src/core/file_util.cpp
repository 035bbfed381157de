// Whole-file reads and crash-safe writes.
#include "core/file_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace remora {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open for reading (", std::strerror(errno), ")");
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  return content.str();
}

void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& write) {
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* file = std::fopen(temp.c_str(), "wb");
  if (!file) fail(path, ": cannot create temporary file ", temp, " (", std::strerror(errno), ")");
  try {
    write(file);
    if (std::fflush(file) != 0 || ::fsync(::fileno(file)) != 0) {
      fail(path, ": write failed (", std::strerror(errno), ")");
    }
  } catch (...) {
    std::fclose(file);
    std::remove(temp.c_str());
    throw;
  }
  if (std::fclose(file) != 0) {
    std::remove(temp.c_str());
    fail(path, ": write failed on close (", std::strerror(errno), ")");
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    fail(path, ": cannot rename temporary file into place (", std::strerror(errno), ")");
  }
}

void write_text_file_atomically(const std::string& path, const std::string& content) {
  write_file_atomically(path, [&](std::FILE* file) {
    if (std::fwrite(content.data(), 1, content.size(), file) != content.size()) {
      fail(path, ": write failed (", std::strerror(errno), ")");
    }
  });
}

}  // namespace remora
