// Bounded reads of regular files, crash-safe writes through the write environment, the output guard.
#include "core/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/write_env.h"

namespace remora {
namespace fs = std::filesystem;
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Makes `dir` and its missing parents through the write environment.
void make_directories(const fs::path& dir) {
  if (dir.empty() || is_folder(dir)) return;
  make_directories(dir.parent_path());
  if (const int error = write_env().make_directory(dir.string())) {
    fail(dir.string(), ": cannot create folder (", std::strerror(error), ")");
  }
}

// fsync of a folder, so that a rename into it survives a power cut (best effort).
void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// The absolute, symlink-free spelling of `path` (its existing part resolved), without a trailing
// separator.
fs::path resolved(const std::string& path) {
  std::error_code error;
  fs::path out = fs::weakly_canonical(fs::absolute(path), error);
  if (error) out = fs::absolute(path).lexically_normal();
  if (!out.has_filename() && out.has_parent_path() && out != out.root_path()) out = out.parent_path();
  return out;
}

// Whether `inner` is `outer` or lies below it.
bool is_within(const fs::path& inner, const fs::path& outer) {
  return std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end()).first == outer.end();
}

}  // namespace

fs::file_status path_status(const std::string& path, bool follow_links) {
  std::error_code error;
  const fs::file_status status = follow_links ? fs::status(path, error) : fs::symlink_status(path, error);
  if (error && status.type() != fs::file_type::not_found) fail(path, ": cannot be looked up (", error.message(), ")");
  return status;
}

bool path_exists(const std::string& path) { return fs::exists(path_status(path)); }

bool is_folder(const std::string& path) { return fs::is_directory(path_status(path)); }

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) fail(path, ": cannot open ", what, " (", std::strerror(errno), ")");
  if (!S_ISREG(info.st_mode)) fail(path, ": ", what, " is ", kind_of(info.st_mode), "; expected a regular file");
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  require_regular_file(path, "file");
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) fail(path, ": cannot open for reading (", std::strerror(errno), ")");
  std::string content;
  char buffer[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    if (content.size() + got > max_bytes) {
      std::fclose(file);
      fail(path, ": larger than the ", max_bytes, "-byte limit for this file");
    }
    content.append(buffer, got);
  }
  const bool bad = std::ferror(file) != 0;
  std::fclose(file);
  if (bad) fail(path, ": read error");
  return content;
}

void FileSink::write(const void* data, size_t bytes) const {
  if (const int error = write_env().write(file_, data, bytes)) fail(path_, ": write failed (", std::strerror(error), ")");
}

void write_file_atomically(const std::string& path, const std::function<void(const FileSink&)>& write) {
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && !S_ISREG(info.st_mode)) {
    fail(path, ": exists and is ", kind_of(info.st_mode), "; refusing to replace it");
  }
  WriteEnv& env = write_env();
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* file = nullptr;
  if (const int error = env.open(temp, "wb", &file)) {
    fail(path, ": cannot create temporary file ", temp, " (", std::strerror(error), ")");
  }
  try {
    write(FileSink(file, path));
    if (const int error = env.sync(file)) fail(path, ": write failed (", std::strerror(error), ")");
  } catch (...) {
    env.close(file);
    std::remove(temp.c_str());
    throw;
  }
  if (const int error = env.close(file)) {
    std::remove(temp.c_str());
    fail(path, ": write failed on close (", std::strerror(error), ")");
  }
  if (const int error = env.rename(temp, path)) {
    std::remove(temp.c_str());
    fail(path, ": cannot rename temporary file into place (", std::strerror(error), ")");
  }
  sync_directory(fs::path(path).parent_path());
}

void replace_folder_atomically(const std::string& dir, bool overwrite,
                               const std::function<void(const std::string& temp_dir)>& fill) {
  fs::path out = fs::path(dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "a/b/" -> "a/b"
  const fs::file_status status = path_status(out, /*follow_links=*/false);
  if (fs::exists(status)) {
    if (!fs::is_directory(status)) fail(out.string(), ": exists and is not a folder; refusing to replace it");
    if (!overwrite) fail(out.string(), ": already exists (pass --overwrite to replace it)");
  }
  const std::string suffix = std::to_string(::getpid());
  const fs::path temp = out.parent_path() / (out.filename().string() + ".tmp-" + suffix);
  const fs::path old = out.parent_path() / (out.filename().string() + ".old-" + suffix);
  fs::remove_all(temp);
  make_directories(temp);
  try {
    fill(temp.string());
    // The old folder moves aside before the new one moves in, so that at every moment one complete
    // version exists under a known name.
    if (path_exists(out)) {
      if (const int error = write_env().rename(out.string(), old.string())) {
        fail(out.string(), ": cannot move the old folder aside (", std::strerror(error), ")");
      }
    }
    if (const int error = write_env().rename(temp.string(), out.string())) {
      if (path_exists(old)) write_env().rename(old.string(), out.string());
      fail(out.string(), ": cannot rename the new folder into place (", std::strerror(error), ")");
    }
  } catch (...) {
    fs::remove_all(temp);
    throw;
  }
  sync_directory(out.parent_path());
  std::error_code ignored;
  fs::remove_all(old, ignored);
}

LineLog::LineLog(std::string path) : path_(std::move(path)) {
  if (const int error = write_env().open(path_, "ab", &file_)) fail(path_, ": cannot open for appending (", std::strerror(error), ")");
}

LineLog::~LineLog() {
  if (file_) write_env().close(file_);
}

void LineLog::close() {
  std::FILE* file = std::exchange(file_, nullptr);
  if (const int error = write_env().close(file)) fail(path_, ": write failed on close (", std::strerror(error), ")");
}

void LineLog::append(const std::string& line) {
  const std::string text = line + "\n";
  WriteEnv& env = write_env();
  int error = env.write(file_, text.data(), text.size());
  if (error == 0 && std::fflush(file_) != 0) error = errno != 0 ? errno : EIO;
  if (error) fail(path_, ": write failed (", std::strerror(error), ")");
}

void write_text_file_atomically(const std::string& path, const std::string& content) {
  write_file_atomically(path, [&](const FileSink& sink) { sink.write(content.data(), content.size()); });
}

void require_writable_path(const std::string& path, const std::string& flag) {
  const fs::path target(path);
  const fs::path folder = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code error;
  if (!fs::is_directory(folder, error)) fail(flag, ": the folder ", folder.string(), " of ", path, " does not exist");
  if (fs::is_directory(target, error)) fail(flag, ": ", path, " is a folder; expected a file name");
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && !S_ISREG(info.st_mode)) {
    fail(flag, ": ", path, " exists and is ", kind_of(info.st_mode), "; refusing to replace it");
  }
}

void refuse_output_overlapping_inputs(const std::string& path, const std::string& flag,
                                      const std::vector<InputPath>& inputs) {
  const fs::path output = resolved(path);
  for (const auto& input : inputs) {
    if (input.path.empty()) continue;
    const fs::path in = resolved(input.path);
    const char* relation = output == in                 ? "is"
                           : is_within(in, output)      ? "contains"
                           : is_within(output, in)      ? "lies inside"
                                                        : nullptr;
    if (relation) {
      fail(flag, ": ", path, " ", relation, " ", input.what, " (", input.path,
           "); choose an output path apart from every input");
    }
  }
}

}  // namespace remora
