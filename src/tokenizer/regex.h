// A compiled PCRE2 pattern (UTF + Unicode properties, JIT): Split pre-tokenizers, Replace, and eval answer filters.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora {

class Regex {
 public:
  // Throws Error naming `where` and PCRE2's message when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every non-overlapping match as [begin, end) byte offsets, left to right (empty matches skipped).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  // One match with its capture groups, as [begin, end) byte offsets; a group that did not take part in
  // the match is nullopt (Python's re gives None there, findall gives "").
  struct Match {
    size_t begin = 0, end = 0;
    std::vector<std::optional<std::pair<size_t, size_t>>> groups;  // group 1 first; size() == group_count()
  };

  // Every match left to right the way Python's re.finditer/findall (3.7+) and Perl report them, for
  // callers that reproduce Python filters: unlike find_all, empty matches are kept, and a non-empty
  // match may start where an empty one did. `text` must be valid UTF-8 (it is not checked).
  std::vector<Match> find_all_groups(std::string_view text) const;

  // Whether the pattern matches all of `text` (Python's re.fullmatch).
  bool full_match(std::string_view text) const;
  // Number of capture groups in the pattern.
  size_t group_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace remora
