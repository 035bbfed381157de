// The real write environment: stdio, fsync, rename(2), mkdir(2).
#include "core/write_env.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace remora {
namespace {

int errno_or(int fallback) { return errno != 0 ? errno : fallback; }

WriteEnv g_real_env;
WriteEnv* g_env = &g_real_env;

}  // namespace

int WriteEnv::open(const std::string& path, const char* mode, std::FILE** file) {
  errno = 0;
  *file = std::fopen(path.c_str(), mode);
  return *file ? 0 : errno_or(EIO);
}

int WriteEnv::write(std::FILE* file, const void* data, size_t bytes) {
  errno = 0;
  return std::fwrite(data, 1, bytes, file) == bytes ? 0 : errno_or(EIO);
}

int WriteEnv::sync(std::FILE* file) {
  errno = 0;
  if (std::fflush(file) != 0) return errno_or(EIO);
  return ::fsync(::fileno(file)) == 0 ? 0 : errno_or(EIO);
}

int WriteEnv::close(std::FILE* file) {
  errno = 0;
  return std::fclose(file) == 0 ? 0 : errno_or(EIO);
}

int WriteEnv::rename(const std::string& from, const std::string& to) {
  errno = 0;
  return std::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno_or(EIO);
}

int WriteEnv::make_directory(const std::string& path) {
  errno = 0;
  if (::mkdir(path.c_str(), 0777) == 0 || errno == EEXIST) return 0;
  return errno_or(EIO);
}

WriteEnv& write_env() { return *g_env; }

ScopedWriteEnv::ScopedWriteEnv(WriteEnv& env) : previous_(g_env) { g_env = &env; }
ScopedWriteEnv::~ScopedWriteEnv() { g_env = previous_; }

}  // namespace remora
