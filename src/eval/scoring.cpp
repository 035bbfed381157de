// lm-eval's RegexFilter, exact_match, acc/acc_norm and mean_stderr, with remora's number normalisation.
#include "eval/scoring.h"

#include <unicode/locid.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace remora {

namespace {

// Python's str.isspace(): what lm-eval's .strip() removes.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Python's str.strip() on valid UTF-8.
std::string_view python_strip(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t next = begin;
    if (!is_python_space(utf8::next(text, next))) break;
    begin = next;
  }
  size_t end = text.size();
  while (end > begin) {
    // Step back to the start of the last code point.
    size_t start = end - 1;
    while (start > begin && utf8::is_continuation(text[start])) --start;
    size_t next = start;
    if (!is_python_space(utf8::next(text, next)) || next != end) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string valid_utf8(std::string_view text) {
  return utf8::is_valid(text) ? std::string(text) : utf8::decode_lossy(text);
}

// str.lower(): full Unicode lowercasing (final sigma, "İ" -> "i̇"), which ICU's root locale matches.
std::string python_lower(const std::string& text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    std::string out = text;
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
  }
  std::string out;
  icu::UnicodeString::fromUTF8(text).toLower(icu::Locale::getRoot()).toUTF8String(out);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// remora's number canonicalisation (see the header): "+72.50" -> "72.5", "-0.0" -> "0".
std::string canonical_number(std::string s) {
  size_t digits_begin = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  size_t i = digits_begin;
  while (i < s.size() && is_digit(s[i])) ++i;
  if (i == digits_begin) return s;  // no integer digits: not a plain decimal
  if (i < s.size()) {
    if (s[i] != '.') return s;
    for (size_t j = i + 1; j < s.size(); ++j)
      if (!is_digit(s[j])) return s;
    while (s.back() == '0') s.pop_back();  // stops at the dot
    if (s.back() == '.') s.pop_back();
  }
  if (s[0] == '+') s.erase(0, 1);
  if (s[0] == '-' && s.find_first_not_of("0.", 1) == std::string::npos) s.erase(0, 1);
  return s;
}

}  // namespace

AnswerExtractor::AnswerExtractor(const std::string& pattern, MatchTake take, const std::string& where)
    : regex_(std::make_unique<Regex>(pattern, where)), take_(take) {}

std::string AnswerExtractor::extract(std::string_view output) const {
  // PCRE2 matches without checking the subject, so it must be valid UTF-8.
  const std::string text = valid_utf8(output);
  const std::vector<Regex::Match> matches = regex_->find_all_groups(text);
  if (matches.empty()) return std::string(kInvalidAnswer);
  const Regex::Match& match = take_ == MatchTake::kFirst ? matches.front() : matches.back();
  std::string_view value;
  if (match.groups.empty()) {
    value = std::string_view(text).substr(match.begin, match.end - match.begin);
  } else if (match.groups.size() == 1) {
    // findall returns the lone group's string, "" when it did not take part, and lm-eval keeps it.
    if (match.groups[0]) value = std::string_view(text).substr(match.groups[0]->first,
                                                               match.groups[0]->second - match.groups[0]->first);
  } else {
    // findall returns a tuple; lm-eval keeps its first non-empty member. With none, recent lm-eval
    // falls back (older versions raised IndexError).
    const auto group = std::find_if(match.groups.begin(), match.groups.end(),
                                    [](const auto& g) { return g && g->second > g->first; });
    if (group == match.groups.end()) return std::string(kInvalidAnswer);
    value = std::string_view(text).substr((*group)->first, (*group)->second - (*group)->first);
  }
  return std::string(python_strip(value));
}

std::string extract_regex(std::string_view output, const std::string& pattern, MatchTake take,
                          const std::string& where) {
  return AnswerExtractor(pattern, take, where).extract(output);
}

std::string strict_match(std::string_view output) {
  static const AnswerExtractor extractor(std::string(kStrictMatchPattern), MatchTake::kFirst, "strict-match");
  return extractor.extract(output);
}

std::string flexible_extract(std::string_view output) {
  static const AnswerExtractor extractor(std::string(kFlexibleExtractPattern), MatchTake::kLast,
                                         "flexible-extract");
  return extractor.extract(output);
}

std::string normalize_answer(std::string_view answer) {
  std::string s = valid_utf8(answer);
  // lm-eval's regexes_to_ignore, in order; each re.sub replaces every match.
  s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
  // "(?s).*#### " is greedy, so it takes everything through the last "#### ".
  if (const size_t pos = s.rfind("#### "); pos != std::string::npos) s.erase(0, pos + 5);
  // "\.$" removes one dot at the end or before a final "\n"; alternating it with our trim until neither
  // changes anything (see the header) amounts to: trim, then drop trailing dots and whitespace.
  s = std::string(python_strip(s));
  while (!s.empty() && s.back() == '.') {
    s.pop_back();
    s = std::string(python_strip(s));
  }
  return canonical_number(python_lower(s));
}

std::string gold_answer(std::string_view answer_field) { return normalize_answer(answer_field); }

bool exact_match(std::string_view prediction, std::string_view gold) {
  if (prediction == kInvalidAnswer) return false;
  return normalize_answer(prediction) == normalize_answer(gold);
}

size_t code_point_count(std::string_view text) {
  size_t count = 0;
  for (size_t pos = 0; pos < text.size(); ++count) utf8::next(text, pos);
  return count;
}

ChoicePrediction score_choices(const std::vector<double>& loglikelihoods, const std::vector<std::string>& choices) {
  REMORA_CHECK(!choices.empty(), "multiple choice: no choices to score");
  REMORA_CHECK(loglikelihoods.size() == choices.size(), "multiple choice: ", loglikelihoods.size(),
               " log-likelihoods for ", choices.size(), " choices");
  ChoicePrediction prediction;
  double best = 0, best_norm = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const double ll = loglikelihoods[i];
    REMORA_CHECK(!std::isnan(ll), "multiple choice: the log-likelihood of choice ", i, " ('", choices[i],
                 "') is NaN");
    const double norm = ll / static_cast<double>(std::max<size_t>(code_point_count(choices[i]), 1));
    // Strict comparisons keep the first index on ties, as numpy.argmax does.
    if (i == 0 || ll > best) {
      best = ll;
      prediction.predicted = i;
    }
    if (i == 0 || norm > best_norm) {
      best_norm = norm;
      prediction.predicted_norm = i;
    }
  }
  return prediction;
}

size_t choice_label_index(const std::vector<std::string>& labels, std::string_view answer_key) {
  const auto it = std::find(labels.begin(), labels.end(), answer_key);
  if (it != labels.end()) return static_cast<size_t>(it - labels.begin());
  std::ostringstream list;
  for (size_t i = 0; i < labels.size(); ++i) list << (i ? ", " : "") << "'" << labels[i] << "'";
  fail("answerKey '", answer_key, "' is not one of the choice labels [", list.str(), "]");
}

MeanStderr mean_and_stderr(const std::vector<double>& values) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  MeanStderr result{nan, nan};
  if (values.empty()) return result;
  const double n = static_cast<double>(values.size());
  double sum = 0;
  for (double v : values) sum += v;
  result.mean = sum / n;
  if (values.size() < 2) return result;
  // Two passes, like lm-eval's sample_stddev: sum of squared deviations from the mean.
  double squares = 0;
  for (double v : values) squares += (v - result.mean) * (v - result.mean);
  result.std_error = std::sqrt(squares / (n - 1)) / std::sqrt(n);
  return result;
}

}  // namespace remora
