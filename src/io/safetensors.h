// safetensors: validated, mmap'd reading and atomic writing of the Hugging Face tensor file format.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace remora {

// One tensor's entry in a safetensors header. Offsets are relative to the start of the data section.
struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;  // as written in the file: "BF16", "F32", ...
  c10::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// The header cap of the reference implementation (huggingface/safetensors MAX_HEADER_SIZE).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// A safetensors file opened read-only through mmap. The constructor validates everything before any
// tensor is trusted (header length within the file and the cap, JSON object, known dtypes, shapes,
// offsets that tile the data section exactly, shape x dtype size == byte span) and throws Error
// naming the file and tensor on the first violation. Movable, not copyable; unmaps on destruction.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) = delete;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Entries in file order (sorted by offset).
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr if absent.
  const SafetensorsEntry* find(const std::string& name) const;

  // Copies the tensor into `destination` (same shape; any dtype/device: converted on copy), then tells
  // the kernel it may drop the mapped pages, so loading a model costs about its own size in memory.
  void copy_into(const SafetensorsEntry& entry, at::Tensor& destination) const;
  // A new CPU tensor owning a copy of the data, in the file's dtype.
  at::Tensor load(const std::string& name) const;

 private:
  void validate_and_index(const std::string& header_json, uint64_t data_bytes);
  // Lets the kernel drop the mapped pages of data bytes [begin, end); they are re-read on demand.
  void release_pages(uint64_t begin, uint64_t end) const;

  std::string path_;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  const uint8_t* data_ = nullptr;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device, contiguous or not) to `path` atomically, with __metadata__ = `metadata`
// plus {"format": "pt"} (transformers' loader requires it). Names must be unique.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       std::map<std::string, std::string> metadata = {});

// The safetensors dtype name for a ScalarType ("F32", ...); throws Error for unsupported ones.
std::string safetensors_dtype_name(c10::ScalarType dtype);

}  // namespace remora
