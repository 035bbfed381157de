// Pre-tokenizers, following the semantics of Hugging Face's Rust crate (split behaviours included).
#include "tokenizer/pre_tokenizers.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/regex.h"

namespace remora {

const char* const kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return Behavior::Removed;
  if (name == "Isolated") return Behavior::Isolated;
  if (name == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::MergedWithNext;
  if (name == "Contiguous") return Behavior::Contiguous;
  fail(where, ": unsupported split behavior '", name, "'");
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// Cuts `piece` at the given matches according to the behaviour (the Rust crate's
// NormalizedString::split), appending the non-empty results.
void split_piece(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches, bool invert,
                 Behavior behavior, std::vector<Piece>& out) {
  std::vector<Span> spans;
  size_t last = 0;
  for (const auto& [b, e] : matches) {
    if (b > last) spans.push_back({last, b, invert});
    spans.push_back({b, e, !invert});
    last = e;
  }
  if (last < piece.text.size()) spans.push_back({last, piece.text.size(), invert});

  std::vector<std::pair<size_t, size_t>> kept;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::Removed:
      for (const auto& s : spans) {
        if (!s.is_match) kept.emplace_back(s.begin, s.end);
      }
      break;
    case Behavior::Isolated:
      for (const auto& s : spans) kept.emplace_back(s.begin, s.end);
      break;
    case Behavior::MergedWithPrevious:
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !kept.empty()) {
          kept.back().second = s.end;
        } else {
          kept.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().first = it->begin;
        } else {
          kept.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::Contiguous:
      for (size_t i = 0; i < spans.size(); ++i) {
        if (i > 0 && spans[i].is_match == previous_match) {
          kept.back().second = spans[i].end;
        } else {
          kept.emplace_back(spans[i].begin, spans[i].end);
        }
        previous_match = spans[i].is_match;
      }
      break;
  }
  for (const auto& [b, e] : kept) {
    if (e > b) out.push_back({piece.text.substr(b, e - b), piece.at_start && b == 0});
  }
}

std::vector<std::pair<size_t, size_t>> find_literal(const std::string& text, const std::string& literal) {
  std::vector<std::pair<size_t, size_t>> matches;
  if (literal.empty()) return matches;
  for (size_t at = text.find(literal); at != std::string::npos; at = text.find(literal, at + literal.size())) {
    matches.emplace_back(at, at + literal.size());
  }
  return matches;
}

class Split : public PreTokenizer {
 public:
  Split(const nlohmann::json& spec, const std::string& where)
      : behavior_(parse_behavior(spec.at("behavior").get<std::string>(), where)),
        invert_(spec.value("invert", false)) {
    const auto& pattern = spec.at("pattern");
    if (pattern.contains("Regex")) {
      regex_ = std::make_unique<Regex>(pattern.at("Regex").get<std::string>(), where);
    } else if (pattern.contains("String")) {
      literal_ = pattern.at("String").get<std::string>();
    } else {
      fail(where, ": Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
  }
  Split(std::unique_ptr<Regex> regex, Behavior behavior, bool invert = false)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}

  std::vector<Piece> split(std::vector<Piece> pieces) const override {
    std::vector<Piece> out;
    for (const auto& piece : pieces) {
      split_piece(piece, regex_ ? regex_->find_all(piece.text) : find_literal(piece.text, literal_), invert_,
                  behavior_, out);
    }
    return out;
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string literal_;
  Behavior behavior_;
  bool invert_ = false;
};

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(const nlohmann::json& spec, const std::string& where)
      : add_prefix_space_(spec.value("add_prefix_space", true)) {
    if (spec.value("use_regex", true)) regex_ = std::make_unique<Regex>(kGpt2SplitPattern, where);
  }
  std::vector<Piece> split(std::vector<Piece> pieces) const override {
    std::vector<Piece> out;
    for (auto& piece : pieces) {
      if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) piece.text.insert(0, " ");
      if (regex_) {
        split_piece(piece, regex_->find_all(piece.text), false, Behavior::Isolated, out);
      } else if (!piece.text.empty()) {
        out.push_back(std::move(piece));
      }
    }
    for (auto& piece : out) piece.text = byte_level::encode(piece.text);
    return out;
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  explicit Metaspace(const nlohmann::json& spec, const std::string& where)
      : replacement_(spec.value("replacement", "\xE2\x96\x81")), split_(spec.value("split", true)) {
    if (spec.contains("prepend_scheme")) {
      scheme_ = spec.at("prepend_scheme").get<std::string>();
    } else {
      // Files from before prepend_scheme existed say add_prefix_space.
      scheme_ = spec.value("add_prefix_space", true) ? "always" : "never";
    }
    if (scheme_ != "always" && scheme_ != "first" && scheme_ != "never") {
      fail(where, ": unsupported Metaspace prepend_scheme '", scheme_, "'");
    }
  }
  std::vector<Piece> split(std::vector<Piece> pieces) const override {
    std::vector<Piece> out;
    for (auto& piece : pieces) {
      piece.text = replace_all(piece.text, " ", replacement_);
      const bool starts = piece.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == "always" || (scheme_ == "first" && piece.at_start))) {
        piece.text.insert(0, replacement_);
      }
      if (split_) {
        split_piece(piece, find_literal(piece.text, replacement_), false, Behavior::MergedWithNext, out);
      } else if (!piece.text.empty()) {
        out.push_back(std::move(piece));
      }
    }
    return out;
  }

 private:
  std::string replacement_;
  std::string scheme_;
  bool split_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  std::vector<Piece> split(std::vector<Piece> pieces) const override {
    for (const auto& part : parts_) pieces = part->split(std::move(pieces));
    return pieces;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  const std::string here = where + " (" + type + ")";
  if (type == "Split") return std::make_unique<Split>(spec, here);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(spec, here);
  if (type == "Metaspace") return std::make_unique<Metaspace>(spec, here);
  if (type == "Digits") {
    const bool individual = spec.value("individual_digits", false);
    return std::make_unique<Split>(std::make_unique<Regex>(individual ? R"(\p{N})" : R"(\p{N}+)", here),
                                   Behavior::Isolated);
  }
  if (type == "Whitespace") {
    return std::make_unique<Split>(std::make_unique<Regex>(R"(\w+|[^\w\s]+)", here), Behavior::Removed,
                                   /*invert=*/true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<Split>(std::make_unique<Regex>(R"(\s+)", here), Behavior::Removed);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& part : spec.at("pretokenizers")) {
      if (auto made = make_pre_tokenizer(part, where)) parts.push_back(std::move(made));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail(where, ": unsupported pre_tokenizer type '", type,
       "' (supported: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Sequence)");
}

}  // namespace remora
