// Small file helpers: bounded reads of regular files, crash-safe writes, and the guard that keeps an
// output from landing on (or around) anything a user gave as input.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace remora {

// Files remora reads whole (JSON configs, templates, recipes) are never larger than this unless the
// caller says otherwise; a bigger one is an Error rather than an allocation of its size.
constexpr uint64_t kMaxTextFileBytes = uint64_t{1} << 30;

// What is at `path` (the link itself when `follow_links` is false), as <filesystem>'s status, except
// that a path the system cannot look up at all (a name too long, a loop of links, a parent it may not
// search) is an Error naming it rather than a std::filesystem exception; a missing path is not_found.
std::filesystem::file_status path_status(const std::string& path, bool follow_links = true);
bool path_exists(const std::string& path);
bool is_folder(const std::string& path);

// Throws Error naming `path` unless it exists and is a regular file (not a folder, FIFO or device):
// checked before anything opens a user's input, since opening a FIFO blocks and a device never ends.
// `what` says what the file is for ("data file", "recipe", ...).
void require_regular_file(const std::string& path, const std::string& what);

// Reads a whole regular file of at most `max_bytes`; throws Error naming the path otherwise.
std::string read_text_file(const std::string& path, uint64_t max_bytes = kMaxTextFileBytes);

// What write_file_atomically hands its callback: writes through the write environment and throws
// Error naming the destination when a write fails (a full disk, an I/O error).
class FileSink {
 public:
  FileSink(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  void write(const void* data, size_t bytes) const;

 private:
  std::FILE* file_;
  std::string path_;
};

// Writes a file so that readers see either the old content or the complete new content, never a
// partial file: `write` fills a temporary sibling "<path>.tmp.<pid>", which is fsync'd and renamed
// over `path`. On any exception the temporary is removed and the exception propagates. An existing
// `path` that is not a regular file (a device such as /dev/full, a FIFO, a folder) is refused: a
// rename would replace it.
void write_file_atomically(const std::string& path, const std::function<void(const FileSink&)>& write);

// Creates or replaces the folder `dir` as a whole: `fill` writes into a temporary sibling
// "<dir>.tmp-<pid>", which is renamed into place only when fill returns. An existing `dir` is an
// Error unless `overwrite` (and always when it is not a folder). On any exception the temporary
// folder is removed and `dir` is untouched. A trailing separator in `dir` is ignored.
void replace_folder_atomically(const std::string& dir, bool overwrite,
                               const std::function<void(const std::string& temp_dir)>& fill);

// Throws Error naming `flag` when `path`'s folder does not exist or `path` is a folder: checked
// before long work, so a mistyped output path does not cost the run.
void require_writable_path(const std::string& path, const std::string& flag);

// An input of a command, for the overlap guard: the path and what it is ("--model", "data.train").
struct InputPath {
  std::string path;
  std::string what;
};

// Throws Error naming `flag` when the output `path` is an input, contains one or lies inside one
// (after resolving symbolic links and "..", so other spellings of the same place are caught too).
// Every verb that writes calls this before any work: writing, or replacing with --overwrite, could
// otherwise destroy the model, adapter or data the command was given. Empty input paths are skipped.
void refuse_output_overlapping_inputs(const std::string& path, const std::string& flag,
                                      const std::vector<InputPath>& inputs);

// A log that grows by whole lines (metrics.jsonl), each written and flushed through the write
// environment as it comes; a failed write is an Error naming the file. A crash can leave at most a
// partial last line, which readers skip.
class LineLog {
 public:
  explicit LineLog(std::string path);
  ~LineLog();
  LineLog(const LineLog&) = delete;
  LineLog& operator=(const LineLog&) = delete;
  void append(const std::string& line);
  // Closes the file, throwing Error if that fails (the destructor closes quietly, after an error).
  void close();

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Convenience for text content.
void write_text_file_atomically(const std::string& path, const std::string& content);

}  // namespace remora
