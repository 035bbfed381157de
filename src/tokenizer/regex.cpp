// PCRE2 wrapper. Oniguruma (what Hugging Face's Rust tokenizers use) and PCRE2 agree on the
// constructs tokenizer patterns use: \p{L}/\p{N} classes, (?i:...), and look-ahead such as \s+(?!\S).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include <mutex>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace remora {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  // One match-data block per Regex, guarded, since tokenizers may be shared between threads.
  mutable std::mutex mutex;
  pcre2_match_data* data = nullptr;
  uint32_t group_count = 0;
  std::string where;  // the pattern's file and field, for match errors
};

namespace {

[[noreturn]] void fail_match(int rc, const std::string& where) {
  PCRE2_UCHAR message[256];
  pcre2_get_error_message(rc, message, sizeof(message));
  fail(where, ": regex match failed: ", reinterpret_cast<const char*>(message),
       " (the pattern backtracks too much on this text)");
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) : impl_(std::make_unique<Impl>()) {
  impl_->where = where;
  int error = 0;
  PCRE2_SIZE offset = 0;
  // The pattern's UTF-8 is checked (patterns can come from the command line); subjects are not.
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    fail(where, ": regex '", pattern, "' does not compile at offset ", offset, ": ",
         reinterpret_cast<const char*>(message));
  }
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // best effort: interpreted matching if JIT is off
  impl_->data = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  pcre2_pattern_info(impl_->code, PCRE2_INFO_CAPTURECOUNT, &impl_->group_count);
}

Regex::~Regex() {
  if (impl_->data) pcre2_match_data_free(impl_->data);
  if (impl_->code) pcre2_code_free(impl_->code);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // Text has been validated as UTF-8 by the caller's pipeline (invalid input was replaced).
    const int rc = pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, impl_->data,
                               nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail_match(rc, impl_->where);
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(impl_->data);
    const size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {
      // Empty match: step over one whole character.
      if (begin >= text.size()) break;
      start = begin + 1;
      while (start < text.size() && utf8::is_continuation(text[start])) ++start;
      continue;
    }
    matches.emplace_back(begin, end);
    start = end;
  }
  return matches;
}

bool Regex::full_match(std::string_view text) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED, impl_->data, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail_match(rc, impl_->where);
  return true;
}

size_t Regex::group_count() const { return impl_->group_count; }

std::vector<Regex::Match> Regex::find_all_groups(std::string_view text) const {
  std::vector<Match> matches;
  std::lock_guard<std::mutex> lock(impl_->mutex);  // (find_all_groups)
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  // After an empty match, first try a non-empty match anchored at the same place (pcre2demo's loop);
  // only if there is none move on one character. That is exactly Python 3.7+'s findall rule.
  uint32_t options = 0;
  while (start <= text.size()) {
    const int rc = pcre2_match(impl_->code, subject, text.size(), start, options | PCRE2_NO_UTF_CHECK,
                               impl_->data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (options == 0 || start >= text.size()) break;
      options = 0;
      ++start;
      while (start < text.size() && utf8::is_continuation(text[start])) ++start;
      continue;
    }
    if (rc < 0) fail_match(rc, impl_->where);
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(impl_->data);
    Match match;
    match.begin = ovector[0];
    match.end = ovector[1];
    // \K inside a look-ahead can report a start after the end; nothing sensible to return then.
    REMORA_CHECK(match.begin <= match.end, "regex match failed: \\K made the match end before it starts");
    match.groups.resize(impl_->group_count);
    // rc counts the pairs up to the highest group that was set; later groups did not take part.
    for (uint32_t g = 1; g <= impl_->group_count; ++g) {
      if (static_cast<int>(g) >= rc || ovector[2 * g] == PCRE2_UNSET) continue;
      match.groups[g - 1] = std::make_pair(size_t{ovector[2 * g]}, size_t{ovector[2 * g + 1]});
    }
    matches.push_back(std::move(match));
    start = matches.back().end;
    options = matches.back().begin == matches.back().end ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
  }
  return matches;
}

}  // namespace remora
