// Added tokens of tokenizer.json: found in the text (leftmost-longest) before normalisation and
// pre-tokenisation, honouring lstrip/rstrip/single_word.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace remora {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// A stretch of text that is either plain (token < 0) or one added token (index into the list).
struct Segment {
  size_t begin, end;
  int32_t token = -1;
};

// Finds occurrences of a set of strings, longest match at the leftmost position first.
class AddedTokenMatcher {
 public:
  void add(const std::string& pattern, int32_t token_index);
  // Splits `text` into plain and token segments (plain segments may be empty and are dropped).
  std::vector<Segment> split(std::string_view text, const std::vector<AddedToken>& tokens) const;
  bool empty() const { return by_first_byte_.empty(); }

 private:
  // Candidates per first byte, longest first.
  std::unordered_map<unsigned char, std::vector<std::pair<std::string, int32_t>>> by_first_byte_;
};

std::vector<AddedToken> parse_added_tokens(const nlohmann::json& list, const std::string& where);

}  // namespace remora
