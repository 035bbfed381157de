// The seam every writer goes through (LevelDB's Env idea): tests install an environment that fails a
// chosen step (a write hitting ENOSPC, a rename, an fsync) and check that nothing earlier is lost.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace remora {

// One method per kind of step a writer takes. Each returns 0 on success or an errno value; the
// default environment does the real thing.
class WriteEnv {
 public:
  virtual ~WriteEnv() = default;
  // fopen(path, mode); on failure *file stays nullptr.
  virtual int open(const std::string& path, const char* mode, std::FILE** file);
  // Writes all `bytes` or fails.
  virtual int write(std::FILE* file, const void* data, size_t bytes);
  // fflush + fsync: the data is on disk when this returns 0.
  virtual int sync(std::FILE* file);
  virtual int close(std::FILE* file);
  virtual int rename(const std::string& from, const std::string& to);
  virtual int make_directory(const std::string& path);  // one level; EEXIST is success
};

// The environment in use (the real one unless a test installed another).
WriteEnv& write_env();

// Installs `env` for its lifetime, then restores the previous one. Tests only.
class ScopedWriteEnv {
 public:
  explicit ScopedWriteEnv(WriteEnv& env);
  ~ScopedWriteEnv();
  ScopedWriteEnv(const ScopedWriteEnv&) = delete;
  ScopedWriteEnv& operator=(const ScopedWriteEnv&) = delete;

 private:
  WriteEnv* previous_;
};

}  // namespace remora
