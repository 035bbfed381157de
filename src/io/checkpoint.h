// A Hugging Face checkpoint's weights: model.safetensors, or shards listed in model.safetensors.index.json.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace remora {

// Every tensor of a checkpoint folder, whichever shard holds it. Shards are opened (and validated)
// once; tensor data is only touched by copy_into.
class CheckpointTensors {
 public:
  // Throws Error if the folder has neither file, an index names a missing shard or a tensor its
  // shard lacks, or two shards hold the same tensor.
  explicit CheckpointTensors(const std::string& model_dir);

  struct Located {
    const SafetensorsFile* file;
    const SafetensorsEntry* entry;
  };
  // nullptr-filled if absent.
  Located find(const std::string& name) const;
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Located> tensors_;
};

}  // namespace remora
