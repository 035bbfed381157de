// Decoders, each matching the Rust crate's decode_chain for the same component.
#include "tokenizer/decoders.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace remora {
namespace {

// Tokens whose every character is in the byte map become those bytes; others (added tokens such
// as "<|eot_id|>") keep their own UTF-8. The joined bytes are decoded once, lossily.
class ByteLevel : public TokenDecoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const auto& token : tokens) {
      std::string mapped;
      bool all = true;
      size_t pos = 0;
      while (pos < token.size()) {
        const auto byte = byte_level::byte_of(utf8::next(token, pos));
        if (!byte) {
          all = false;
          break;
        }
        mapped += static_cast<char>(*byte);
      }
      bytes += all ? mapped : token;
    }
    return {utf8::decode_lossy(bytes)};
  }
};

class Metaspace : public TokenDecoder {
 public:
  explicit Metaspace(const nlohmann::json& spec) : replacement_(spec.value("replacement", "\xE2\x96\x81")) {
    const std::string scheme = spec.contains("prepend_scheme") ? spec.at("prepend_scheme").get<std::string>()
                                                               : (spec.value("add_prefix_space", true) ? "always" : "never");
    strip_first_ = scheme != "never";
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string text = replace_all(tokens[i], replacement_, " ");
      if (i == 0 && strip_first_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
      tokens[i] = std::move(text);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_ = true;
};

// "<0x41>"-style tokens become bytes; a run of them that is not valid UTF-8 becomes one U+FFFD per
// byte, as in the Rust crate.
class ByteFallback : public TokenDecoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (utf8::is_valid(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending_count; ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (auto& token : tokens) {
      int byte = -1;
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>') {
        char* end = nullptr;
        const std::string hex = token.substr(3, 2);
        const long value = std::strtol(hex.c_str(), &end, 16);
        if (end == hex.c_str() + 2) byte = static_cast<int>(value);
      }
      if (byte >= 0) {
        pending += static_cast<char>(byte);
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }
};

class Fuse : public TokenDecoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const auto& token : tokens) joined += token;
    return {joined};
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class Strip : public TokenDecoder {
 public:
  explicit Strip(const nlohmann::json& spec)
      : content_(spec.at("content").get<std::string>()),
        start_(spec.value("start", 0)),
        stop_(spec.value("stop", 0)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& token : tokens) {
      for (int i = 0; i < start_ && token.compare(0, content_.size(), content_) == 0; ++i) {
        token.erase(0, content_.size());
      }
      for (int i = 0; i < stop_ && token.size() >= content_.size() &&
                      token.compare(token.size() - content_.size(), content_.size(), content_) == 0;
           ++i) {
        token.erase(token.size() - content_.size());
      }
    }
    return tokens;
  }

 private:
  std::string content_;
  int start_, stop_;
};

class Replace : public TokenDecoder {
 public:
  Replace(const nlohmann::json& spec, const std::string& where) : content_(spec.at("content").get<std::string>()) {
    const auto& pattern = spec.at("pattern");
    if (pattern.contains("String")) {
      literal_ = pattern.at("String").get<std::string>();
    } else if (pattern.contains("Regex")) {
      regex_ = std::make_unique<Regex>(pattern.at("Regex").get<std::string>(), where);
    } else {
      fail(where, ": Replace pattern must be {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& token : tokens) {
      if (!regex_) {
        if (!literal_.empty()) token = replace_all(token, literal_, content_);
        continue;
      }
      std::string out;
      size_t last = 0;
      for (const auto& [b, e] : regex_->find_all(token)) {
        out.append(token, last, b - last);
        out += content_;
        last = e;
      }
      out.append(token, last, std::string::npos);
      token = std::move(out);
    }
    return tokens;
  }

 private:
  std::string literal_, content_;
  std::unique_ptr<Regex> regex_;
};

class Sequence : public TokenDecoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<TokenDecoder>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& part : parts_) tokens = part->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<TokenDecoder>> parts_;
};

}  // namespace

std::unique_ptr<TokenDecoder> make_decoder(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  const std::string here = where + " (" + type + ")";
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Metaspace") return std::make_unique<Metaspace>(spec);
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") return std::make_unique<Strip>(spec);
  if (type == "Replace") return std::make_unique<Replace>(spec, here);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<TokenDecoder>> parts;
    for (const auto& part : spec.at("decoders")) {
      if (auto made = make_decoder(part, where)) parts.push_back(std::move(made));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail(where, ": unsupported decoder type '", type,
       "' (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence)");
}

}  // namespace remora
