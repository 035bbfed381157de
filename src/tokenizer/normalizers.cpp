// Normalizers. Unicode normal forms come from ICU; ASCII input is left alone since every normal
// form maps ASCII to itself, which keeps the common case fast.
#include "tokenizer/normalizers.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <vector>

#include "core/error.h"
#include "tokenizer/regex.h"

namespace remora {
namespace {

bool is_ascii(const std::string& text) {
  for (unsigned char c : text) {
    if (c >= 0x80) return false;
  }
  return true;
}

class UnicodeForm : public Normalizer {
 public:
  UnicodeForm(const std::string& form, const std::string& where) {
    UErrorCode status = U_ZERO_ERROR;
    if (form == "NFC") normalizer_ = icu::Normalizer2::getNFCInstance(status);
    if (form == "NFD") normalizer_ = icu::Normalizer2::getNFDInstance(status);
    if (form == "NFKC") normalizer_ = icu::Normalizer2::getNFKCInstance(status);
    if (form == "NFKD") normalizer_ = icu::Normalizer2::getNFKDInstance(status);
    if (U_FAILURE(status) || normalizer_ == nullptr) fail(where, ": ICU has no ", form, " normalizer");
  }
  std::string normalize(std::string text) const override {
    if (is_ascii(text)) return text;
    UErrorCode status = U_ZERO_ERROR;
    const icu::UnicodeString normalized =
        normalizer_->normalize(icu::UnicodeString::fromUTF8(text), status);
    if (U_FAILURE(status)) fail("unicode normalisation failed: ", u_errorName(status));
    std::string out;
    normalized.toUTF8String(out);
    return out;
  }

 private:
  const icu::Normalizer2* normalizer_ = nullptr;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string text) const override {
    return text.empty() ? text : prefix_ + text;
  }

 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  Replace(const nlohmann::json& spec, const std::string& where) {
    const auto& pattern = spec.at("pattern");
    content_ = spec.at("content").get<std::string>();
    if (pattern.contains("String")) {
      literal_ = pattern.at("String").get<std::string>();
      REMORA_CHECK(!literal_.empty(), where, ": Replace pattern must not be empty");
    } else if (pattern.contains("Regex")) {
      regex_ = std::make_unique<Regex>(pattern.at("Regex").get<std::string>(), where);
    } else {
      fail(where, ": Replace pattern must be {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  std::string normalize(std::string text) const override {
    if (!regex_) return replace_all(text, literal_, content_);
    std::string out;
    size_t last = 0;
    for (const auto& [begin, end] : regex_->find_all(text)) {
      out.append(text, last, begin - last);
      out += content_;
      last = end;
    }
    out.append(text, last, std::string::npos);
    return out;
  }

 private:
  std::string literal_, content_;
  std::unique_ptr<Regex> regex_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string text) const override {
    const char* space = " \t\n\r\f\v";
    if (right_) text.erase(text.find_last_not_of(space) + 1);
    if (left_) text.erase(0, std::min(text.size(), text.find_first_not_of(space)));
    return text;
  }

 private:
  bool left_, right_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string normalize(std::string text) const override {
    for (const auto& part : parts_) text = part->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  for (size_t at = text.find(from); at != std::string_view::npos; at = text.find(from, last)) {
    out.append(text.substr(last, at - last));
    out.append(to);
    last = at + from.size();
  }
  out.append(text.substr(last));
  return out;
}

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  const std::string here = where + " (" + type + ")";
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return std::make_unique<UnicodeForm>(type, here);
  }
  if (type == "Prepend") return std::make_unique<Prepend>(spec.at("prepend").get<std::string>());
  if (type == "Replace") return std::make_unique<Replace>(spec, here);
  if (type == "Strip") {
    return std::make_unique<Strip>(spec.value("strip_left", true), spec.value("strip_right", true));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& part : spec.at("normalizers")) {
      if (auto made = make_normalizer(part, where)) parts.push_back(std::move(made));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail(where, ": unsupported normalizer type '", type,
       "' (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Sequence)");
}

}  // namespace remora
