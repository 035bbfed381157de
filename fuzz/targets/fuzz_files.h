// Fuzz inputs as files: remora's parsers read paths, so each input is written to a private folder on
// /dev/shm (memory) and the real code path (stat, open, mmap, parse) runs on it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace remora::fuzz {

// This process's scratch folder, created on first use.
inline const std::string& scratch() {
  static const std::string dir = [] {
    const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path().string();
    const std::string path = base + "/remora-fuzz-" + std::to_string(::getpid());
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

// Writes `size` bytes to scratch()/name and returns its path.
inline std::string write_file(const std::string& name, const void* data, size_t size) {
  const std::string path = scratch() + "/" + name;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, file) != size) std::abort();
  std::fclose(file);
  return path;
}

inline std::string write_file(const std::string& name, const std::string& text) {
  return write_file(name, text.data(), text.size());
}

}  // namespace remora::fuzz
