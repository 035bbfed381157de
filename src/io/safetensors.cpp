// safetensors reader (mmap + validation) and writer.
#include "io/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"

namespace remora {
namespace {

struct DtypeName {
  const char* name;
  c10::ScalarType type;
};

// The dtypes remora reads and writes; the safetensors spec has more (F8_*, U16, ...), which are
// rejected by name rather than misread.
constexpr DtypeName kDtypes[] = {
    {"F64", c10::kDouble}, {"F32", c10::kFloat},  {"F16", c10::kHalf},  {"BF16", c10::kBFloat16},
    {"I64", c10::kLong},   {"I32", c10::kInt},    {"I16", c10::kShort}, {"I8", c10::kChar},
    {"U8", c10::kByte},    {"BOOL", c10::kBool},
};

std::optional<c10::ScalarType> dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  return std::nullopt;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// A JSON non-negative integer no larger than `limit` (JSON numbers may be negative, floats or huge).
bool as_size(const nlohmann::json& value, uint64_t& out, uint64_t limit = UINT64_MAX) {
  if (value.is_number_unsigned()) {
    out = value.get<uint64_t>();
    return out <= limit;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(value.get<int64_t>());
    return out <= limit;
  }
  return false;
}

}  // namespace

std::string safetensors_dtype_name(c10::ScalarType dtype) {
  for (const auto& d : kDtypes) {
    if (d.type == dtype) return d.name;
  }
  fail("dtype ", c10::toString(dtype), " cannot be written to safetensors");
}

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  require_regular_file(path_, "safetensors file");
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path_, ": cannot open (", std::strerror(errno), ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    fail(path_, ": cannot stat (", std::strerror(errno), ")");
  }
  size_ = static_cast<uint64_t>(info.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail(path_, ": not a safetensors file: ", size_, " bytes, shorter than the 8-byte header length");
  }
  void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) fail(path_, ": mmap failed (", std::strerror(errno), ")");
  map_ = static_cast<const uint8_t*>(mapped);
  try {
    const uint64_t header_bytes = read_u64_le(map_);
    if (header_bytes > kMaxSafetensorsHeaderBytes) {
      fail(path_, ": header length ", header_bytes, " exceeds the ", kMaxSafetensorsHeaderBytes,
           "-byte limit");
    }
    if (header_bytes > size_ - 8) {
      fail(path_, ": header length ", header_bytes, " runs past the end of the ", size_, "-byte file");
    }
    data_ = map_ + 8 + header_bytes;
    validate_and_index(std::string(reinterpret_cast<const char*>(map_ + 8), header_bytes),
                       size_ - 8 - header_bytes);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      entries_(std::move(other.entries_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

void SafetensorsFile::validate_and_index(const std::string& header_json, uint64_t data_bytes) {
  const nlohmann::json header = parse_json(header_json, path_ + ": header");
  if (!header.is_object()) fail(path_, ": header is not a JSON object");

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(path_, ": __metadata__ is not an object of strings");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail(path_, ": __metadata__ value '", key, "' is not a string");
        metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    const std::string where = path_ + ": tensor '" + name + "'";
    if (!value.is_object()) fail(where, ": entry is not an object");
    SafetensorsEntry entry;
    entry.name = name;
    const auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) fail(where, ": missing string field 'dtype'");
    entry.dtype_name = dtype->get<std::string>();
    const auto parsed = dtype_from_name(entry.dtype_name);
    if (!parsed) fail(where, ": unsupported dtype '", entry.dtype_name, "'");
    entry.dtype = *parsed;

    const auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) fail(where, ": missing array field 'shape'");
    uint64_t numel = 1;
    for (const auto& dim : *shape) {
      uint64_t size = 0;
      // Dimensions become int64 sizes; offsets may use the whole uint64 range.
      if (!as_size(dim, size, INT64_MAX)) {
        fail(where, ": shape entries must be non-negative integers below 2^63");
      }
      if (size != 0 && numel > UINT64_MAX / size) fail(where, ": shape overflows");
      numel *= size;
      entry.shape.push_back(static_cast<int64_t>(size));
    }
    const auto offsets = value.find("data_offsets");
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
        !as_size((*offsets)[0], entry.begin) || !as_size((*offsets)[1], entry.end)) {
      fail(where, ": 'data_offsets' must be two non-negative integers");
    }
    if (entry.end < entry.begin) fail(where, ": data_offsets end ", entry.end, " < begin ", entry.begin);
    if (entry.end > data_bytes) {
      fail(where, ": data_offsets end ", entry.end, " is past the data section (", data_bytes,
           " bytes)");
    }
    const uint64_t item = c10::elementSize(entry.dtype);
    if (numel > UINT64_MAX / item || numel * item != entry.end - entry.begin) {
      fail(where, ": shape x ", entry.dtype_name, " size is ", numel, " x ", item,
           " bytes but data_offsets span ", entry.end - entry.begin, " bytes");
    }
    entries_.push_back(std::move(entry));
  }

  std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const auto& entry : entries_) {
    if (entry.begin < expected) {
      fail(path_, ": tensor '", entry.name, "' overlaps the previous tensor (begins at ",
           entry.begin, ", previous ends at ", expected, ")");
    }
    if (entry.begin > expected) {
      fail(path_, ": tensor '", entry.name, "' leaves a hole in the data section (begins at ",
           entry.begin, ", previous ends at ", expected, ")");
    }
    expected = entry.end;
  }
  if (expected != data_bytes) {
    fail(path_, ": tensors cover ", expected, " bytes but the data section has ", data_bytes);
  }
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void SafetensorsFile::copy_into(const SafetensorsEntry& entry, at::Tensor& destination) const {
  if (destination.sizes() != c10::IntArrayRef(entry.shape)) {
    fail(path_, ": tensor '", entry.name, "' has shape ", c10::IntArrayRef(entry.shape),
         " but ", destination.sizes(), " was expected");
  }
  const size_t item = c10::elementSize(entry.dtype);
  const int64_t numel = static_cast<int64_t>((entry.end - entry.begin) / item);
  // Copy in slices, dropping each slice's mapped pages as soon as it is copied, so that the peak
  // is the model plus one slice rather than the model plus its largest tensor (an embedding matrix
  // can be a tenth of a small model).
  constexpr int64_t kSliceBytes = 8 << 20;
  const int64_t slice = destination.is_contiguous() ? std::max<int64_t>(1, kSliceBytes / item) : numel;
  at::Tensor flat = destination.is_contiguous() ? destination.view({-1}) : destination;
  at::NoGradGuard no_grad;
  for (int64_t start = 0; start < numel; start += slice) {
    const int64_t count = std::min(slice, numel - start);
    const uint8_t* bytes = data_ + entry.begin + start * item;
    const std::vector<int64_t> shape =
        count == numel ? entry.shape : std::vector<int64_t>{count};
    at::Tensor source;
    if (reinterpret_cast<uintptr_t>(bytes) % item == 0) {
      // The mapping is read-only; from_blob needs a mutable pointer but nothing writes through it.
      source = at::from_blob(const_cast<uint8_t*>(bytes), shape, at::TensorOptions().dtype(entry.dtype));
    } else {
      source = at::empty(shape, at::TensorOptions().dtype(entry.dtype));
      std::memcpy(source.data_ptr(), bytes, count * item);
    }
    if (count == numel) {
      destination.copy_(source);
    } else {
      flat.narrow(0, start, count).copy_(source);
    }
    release_pages(entry.begin + start * item, entry.begin + (start + count) * item);
  }
}

at::Tensor SafetensorsFile::load(const std::string& name) const {
  const SafetensorsEntry* entry = find(name);
  if (!entry) fail(path_, ": no tensor named '", name, "'");
  at::Tensor out = at::empty(entry->shape, at::TensorOptions().dtype(entry->dtype));
  copy_into(*entry, out);
  return out;
}

void SafetensorsFile::release_pages(uint64_t begin, uint64_t end) const {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto start = reinterpret_cast<uintptr_t>(data_ + begin) & ~(page - 1);
  const auto stop = reinterpret_cast<uintptr_t>(data_ + end);
  if (stop > start) ::madvise(reinterpret_cast<void*>(start), stop - start, MADV_DONTNEED);
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       std::map<std::string, std::string> metadata) {
  metadata["format"] = "pt";
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || header.contains(name)) {
      fail(path, ": duplicate or reserved tensor name '", name, "'");
    }
    at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = cpu.numel() * cpu.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(cpu.scalar_type())},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(cpu));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomically(path, [&](const FileSink& sink) {
    uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(text.size() >> (8 * i));
    sink.write(length, 8);
    sink.write(text.data(), text.size());
    for (const auto& t : contiguous) sink.write(t.data_ptr(), t.numel() * t.element_size());
  });
}

}  // namespace remora
