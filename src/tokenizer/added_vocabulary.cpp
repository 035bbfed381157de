// Added-token matching, as the Rust crate's AddedVocabulary::split_with_indices does it.
#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "tokenizer/token_id.h"
#include "core/error.h"

namespace remora {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Word characters for single_word: ASCII alphanumerics, underscore, and any non-ASCII byte (letters
// of other scripts), which is how the Rust crate's char::is_alphanumeric mostly behaves.
bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

}  // namespace

void AddedTokenMatcher::add(const std::string& pattern, int32_t token_index) {
  if (pattern.empty()) return;
  auto& list = by_first_byte_[static_cast<unsigned char>(pattern[0])];
  list.emplace_back(pattern, token_index);
  std::stable_sort(list.begin(), list.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text, const std::vector<AddedToken>& tokens) const {
  std::vector<Segment> matches;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto it = by_first_byte_.find(static_cast<unsigned char>(text[pos]));
    int32_t found = -1;
    size_t found_length = 0;
    if (it != by_first_byte_.end()) {
      for (const auto& [pattern, index] : it->second) {
        if (text.compare(pos, pattern.size(), pattern) != 0) continue;
        if (tokens[index].single_word) {
          const size_t end = pos + pattern.size();
          if ((pos > 0 && is_word_byte(text[pos - 1])) || (end < text.size() && is_word_byte(text[end]))) continue;
        }
        found = index;
        found_length = pattern.size();
        break;
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + found_length;
    const size_t floor = matches.empty() ? 0 : matches.back().end;
    if (tokens[found].lstrip) {
      while (begin > floor && is_space(text[begin - 1])) --begin;
    }
    if (tokens[found].rstrip) {
      while (end < text.size() && is_space(text[end])) ++end;
    }
    matches.push_back({begin, end, found});
    pos = end;
  }
  std::vector<Segment> segments;
  size_t last = 0;
  for (const auto& match : matches) {
    if (match.begin > last) segments.push_back({last, match.begin, -1});
    segments.push_back(match);
    last = match.end;
  }
  if (last < text.size()) segments.push_back({last, text.size(), -1});
  return segments;
}

std::vector<AddedToken> parse_added_tokens(const nlohmann::json& list, const std::string& where) {
  std::vector<AddedToken> tokens;
  if (list.is_null()) return tokens;
  for (const auto& item : list) {
    AddedToken token;
    token.id = token_id(item.at("id"), where + ": id");
    token.content = item.at("content").get<std::string>();
    REMORA_CHECK(!token.content.empty(), where, ": added token ", token.id, " has empty content");
    token.single_word = item.value("single_word", false);
    token.lstrip = item.value("lstrip", false);
    token.rstrip = item.value("rstrip", false);
    token.normalized = item.value("normalized", true);
    token.special = item.value("special", false);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

}  // namespace remora
