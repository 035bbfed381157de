// Writing, finding and reading training checkpoints.
#include "train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "adapters/adapter_io.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"
#include "io/safetensors.h"
#include "model/loader.h"

namespace remora {
namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  std::ostringstream name;
  name << "step-" << std::setw(8) << std::setfill('0') << step;
  return name.str();
}

std::vector<fs::path> checkpoints(const std::string& output_dir) {
  std::vector<fs::path> found;
  const fs::path root = fs::path(output_dir) / "checkpoints";
  if (!is_folder(root)) return found;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    // Only "step-NNNNNNNN": the temporary and set-aside folders of an interrupted write never count.
    const bool is_step = name.size() == 13 && name.rfind("step-", 0) == 0 &&
                           name.find_first_not_of("0123456789", 5) == std::string::npos;
    if (entry.is_directory() && is_step && path_exists(entry.path() / "progress.json")) {
      found.push_back(entry.path());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

void fsync_file(const fs::path& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) fail(path.string(), ": cannot reopen to sync");
  ::fsync(::fileno(file));
  std::fclose(file);
}

}  // namespace

void write_checkpoint(const std::string& output_dir, const AdaptedModel* adapted, CausalLM& model,
                      torch::optim::AdamW& optimizer, const TrainingProgress& progress,
                      const at::Generator& routing_generator, int64_t keep_last) {
  const fs::path root = fs::path(output_dir) / "checkpoints";
  fs::create_directories(root);
  replace_folder_atomically((root / step_name(progress.step)).string(), /*overwrite=*/true,
                            [&](const std::string& temp_dir) {
    const fs::path temp(temp_dir);
    if (adapted) {
      save_adapter(*adapted, (temp / "adapter").string());
    } else {
      fs::create_directories(temp / "model");
      save_hf_checkpoint(model, (temp / "model").string());
    }
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to((temp / "optimizer.pt").string());
    fsync_file(temp / "optimizer.pt");
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    write_safetensors((temp / "rng.safetensors").string(),
                      {{"cpu", cpu.get_state()}, {"routing", routing_generator.get_state()}});
    // progress.json last: a folder without it is incomplete and ignored.
    const nlohmann::json state = {{"step", progress.step}, {"epoch", progress.epoch},
                                  {"batch_in_epoch", progress.batch_in_epoch}, {"tokens", progress.tokens},
                                  {"seconds", progress.seconds}, {"global_batch_size", progress.global_batch_size}};
    write_text_file_atomically((temp / "progress.json").string(), state.dump(2) + "\n");
  });
  auto all = checkpoints(output_dir);
  for (size_t i = 0; i + keep_last < all.size(); ++i) fs::remove_all(all[i]);
}

std::optional<std::string> latest_checkpoint(const std::string& output_dir) {
  auto all = checkpoints(output_dir);
  if (all.empty()) return std::nullopt;
  return all.back().string();
}

TrainingProgress read_checkpoint(const std::string& checkpoint, torch::optim::AdamW& optimizer,
                                 at::Generator& routing_generator) {
  const fs::path dir(checkpoint);
  torch::serialize::InputArchive archive;
  archive.load_from((dir / "optimizer.pt").string());
  optimizer.load(archive);
  SafetensorsFile rng((dir / "rng.safetensors").string());
  at::Generator cpu = at::detail::getDefaultCPUGenerator();
  cpu.set_state(rng.load("cpu"));
  routing_generator.set_state(rng.load("routing"));
  const std::string path = (dir / "progress.json").string();
  nlohmann::json state;
  try {
    state = read_json_file(path);
    TrainingProgress progress;
    progress.step = state.at("step").get<int64_t>();
    progress.epoch = state.at("epoch").get<int64_t>();
    progress.batch_in_epoch = state.at("batch_in_epoch").get<int64_t>();
    progress.tokens = state.at("tokens").get<int64_t>();
    progress.seconds = state.at("seconds").get<double>();
    progress.global_batch_size = state.value("global_batch_size", int64_t{0});  // absent before multi-worker runs
    return progress;
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not a valid progress record (", e.what(), ")");
  }
}

}  // namespace remora
