// Resolves tensor names across a single-file or sharded safetensors checkpoint.
#include "io/checkpoint.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"

namespace remora {
namespace fs = std::filesystem;

CheckpointTensors::CheckpointTensors(const std::string& model_dir) {
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  std::map<std::string, std::string> expected_shard;  // tensor -> shard file, from the index
  if (path_exists(index_path)) {
    const nlohmann::json index = read_json_file(index_path.string(), kMaxConfigBytes);
    const auto map = index.find("weight_map");
    if (!index.is_object() || map == index.end() || !map->is_object()) {
      fail(index_path.string(), ": missing object field 'weight_map'");
    }
    std::set<std::string> shard_names;
    for (const auto& [tensor, shard] : map->items()) {
      if (!shard.is_string()) fail(index_path.string(), ": weight_map['", tensor, "'] is not a string");
      const std::string name = shard.get<std::string>();
      if (name.find('/') != std::string::npos || name == "..") {
        fail(index_path.string(), ": shard name ", describe(name), " must be a file name in the folder");
      }
      expected_shard[tensor] = name;
      shard_names.insert(name);
    }
    for (const auto& name : shard_names) {
      const fs::path shard = dir / name;
      std::error_code error;  // (a name too long for the file system is an error code, not an exception)
      if (!fs::exists(shard, error)) fail(index_path.string(), ": lists shard ", describe(name), ", which does not exist");
      files_.push_back(std::make_unique<SafetensorsFile>(shard.string()));
    }
  } else if (path_exists(single)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
  } else {
    fail(model_dir, ": no model.safetensors or model.safetensors.index.json");
  }

  for (const auto& file : files_) {
    for (const auto& entry : file->entries()) {
      const auto [it, inserted] = tensors_.emplace(entry.name, Located{file.get(), &entry});
      if (!inserted) {
        fail(file->path(), ": tensor '", entry.name, "' also appears in ", it->second.file->path());
      }
    }
  }
  for (const auto& [tensor, shard] : expected_shard) {
    const auto it = tensors_.find(tensor);
    if (it == tensors_.end() || fs::path(it->second.file->path()).filename() != shard) {
      fail(index_path.string(), ": weight_map says tensor '", tensor, "' is in ", shard,
           ", but that shard does not hold it");
    }
  }
}

CheckpointTensors::Located CheckpointTensors::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? Located{nullptr, nullptr} : it->second;
}

std::vector<std::string> CheckpointTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, located] : tensors_) out.push_back(name);
  return out;
}

}  // namespace remora
