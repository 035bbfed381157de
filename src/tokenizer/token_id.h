// Token ids as tokenizer.json writes them, checked: an id sizes the id -> token table, so a single
// huge id in a small file would otherwise allocate gigabytes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/json_input.h"
#include "core/error.h"

namespace remora {

// Matches the model side's vocabulary cap (ModelLimits::kVocab).
constexpr int64_t kMaxTokenId = int64_t{1} << 22;

// The id in `value`; throws Error naming `where` unless it is an integer in [0, kMaxTokenId).
inline int32_t token_id(const nlohmann::json& value, const std::string& where) {
  if (!value.is_number_integer()) fail(where, ": expected a token id, got ", describe(value));
  const bool in_range = value.is_number_unsigned() ? value.get<uint64_t>() < static_cast<uint64_t>(kMaxTokenId)
                                                   : value.get<int64_t>() >= 0 && value.get<int64_t>() < kMaxTokenId;
  if (!in_range) fail(where, ": token id ", describe(value), " is outside [0, ", kMaxTokenId, ")");
  return static_cast<int32_t>(value.get<int64_t>());
}

}  // namespace remora
