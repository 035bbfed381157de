// Small random models for unit tests, built in memory from a config.json-like object.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "model/decoder.h"
#include "model/loader.h"
#include "model/presets.h"

namespace remora::testing {

// A path for `name` in a temporary folder of this process's own: two runs of the suite at once (or
// one test in two processes) must not share files.
inline std::filesystem::path scratch_path(const std::string& name) {
  const auto folder = std::filesystem::path(::testing::TempDir()) / ("remora_tests_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  return folder / name;  // the name itself is kept: error messages quote it
}

// The toy preset of `arch` with `overrides` applied.
inline nlohmann::json toy_config(const std::string& arch, const nlohmann::json& overrides = {}) {
  nlohmann::json config = preset_config(arch, "toy");
  if (overrides.is_object()) config.update(overrides);
  return config;
}

// An fp32 model with seeded random weights.
inline std::shared_ptr<CausalLM> random_model(const nlohmann::json& config, uint64_t seed = 1,
                                              double std = 0.05) {
  auto model = std::make_shared<CausalLM>(ModelConfig::from_json(config, "test config"),
                                          at::TensorOptions().dtype(at::kFloat));
  initialize_randomly(*model, seed, std);
  return model;
}

// [1, n] ids drawn from a seeded generator.
inline at::Tensor random_ids(int64_t rows, int64_t n, int64_t vocab, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(vocab, {rows, n}, generator, at::kLong);
}

// Copies every parameter that `to` also has (same name and shape).
inline void copy_shared_parameters(CausalLM& from, CausalLM& to) {
  at::NoGradGuard no_grad;
  auto source = from.named_parameters();
  for (auto& item : to.named_parameters()) {
    if (const at::Tensor* value = source.find(item.key())) {
      if (value->sizes() == item.value().sizes()) item.value().copy_(*value);
    }
  }
}

}  // namespace remora::testing
