// The tokenizer pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor, and
// back through the decoder.
#include "tokenizer/tokenizer.h"

#include <unordered_map>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoders.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/utf8.h"

namespace remora {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<TokenDecoder> decoder;
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  std::unordered_map<std::string, size_t> added_by_content;
  AddedTokenMatcher raw_matcher;         // tokens with normalized = false, matched in the raw text
  AddedTokenMatcher normalized_matcher;  // the others, matched in normalised text

  void encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
    std::string normalized = normalizer ? normalizer->normalize(std::string(text)) : std::string(text);
    for (const auto& segment : normalized_matcher.split(normalized, added)) {
      if (segment.token >= 0) {
        out.push_back(added[segment.token].id);
        continue;
      }
      std::vector<Piece> pieces{{normalized.substr(segment.begin, segment.end - segment.begin),
                                 at_start && segment.begin == 0}};
      if (pre_tokenizer) pieces = pre_tokenizer->split(std::move(pieces));
      for (const auto& piece : pieces) model->tokenize(piece.text, out);
    }
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  const nlohmann::json json = read_json_file(path);
  if (!json.is_object()) fail(path, ": not a JSON object");
  return from_json(json, path);
}

Tokenizer Tokenizer::from_json(const nlohmann::json& json, const std::string& where) {
  auto impl = std::make_unique<Impl>();
  try {
    if (json.contains("truncation") && !json.at("truncation").is_null()) {
      fail(where, ": truncation is not supported (remora truncates explicitly)");
    }
    impl->normalizer = make_normalizer(json.value("normalizer", nlohmann::json()), where + ": normalizer");
    impl->pre_tokenizer = make_pre_tokenizer(json.value("pre_tokenizer", nlohmann::json()), where + ": pre_tokenizer");
    REMORA_CHECK(json.contains("model"), where, ": no 'model'");
    impl->model = std::make_unique<BpeModel>(json.at("model"), where + ": model");
    impl->post_processor =
        make_post_processor(json.value("post_processor", nlohmann::json()), where + ": post_processor");
    impl->decoder = make_decoder(json.value("decoder", nlohmann::json()), where + ": decoder");
    impl->added = parse_added_tokens(json.value("added_tokens", nlohmann::json()), where + ": added_tokens");
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": malformed tokenizer.json: ", e.what());
  }
  for (size_t i = 0; i < impl->added.size(); ++i) {
    const AddedToken& token = impl->added[i];
    impl->added_by_id[token.id] = i;
    impl->added_by_content[token.content] = i;
    if (token.normalized && impl->normalizer) {
      impl->normalized_matcher.add(impl->normalizer->normalize(token.content), static_cast<int32_t>(i));
    } else {
      impl->raw_matcher.add(token.content, static_cast<int32_t>(i));
    }
  }
  return Tokenizer(std::move(impl));
}

std::vector<int64_t> Tokenizer::encode(std::string_view input, bool add_special_tokens) const {
  // Invalid UTF-8 becomes U+FFFD first, as it would when a Python or JavaScript string is made.
  std::string repaired;
  std::string_view text = input;
  if (!utf8::is_valid(input)) {
    repaired = utf8::decode_lossy(input);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const auto& segment : impl_->raw_matcher.split(text, impl_->added)) {
    if (segment.token >= 0) {
      ids.push_back(impl_->added[segment.token].id);
    } else {
      impl_->encode_plain(text.substr(segment.begin, segment.end - segment.begin), segment.begin == 0, ids);
    }
  }
  if (add_special_tokens && impl_->post_processor) ids = impl_->post_processor->process(std::move(ids));
  return std::vector<int64_t>(ids.begin(), ids.end());
}

std::string Tokenizer::id_to_token(int64_t id) const {
  const auto it = impl_->added_by_id.find(static_cast<int32_t>(id));
  if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  if (id < 0 || id > INT32_MAX) return "";
  return impl_->model->id_to_token(static_cast<int32_t>(id));
}

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  const auto it = impl_->added_by_content.find(token);
  if (it != impl_->added_by_content.end()) return impl_->added[it->second].id;
  const auto id = impl_->model->token_to_id(token);
  if (!id) return std::nullopt;
  return *id;
}

bool Tokenizer::is_special(int64_t id) const {
  const auto it = impl_->added_by_id.find(static_cast<int32_t>(id));
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

int64_t Tokenizer::vocab_size() const {
  int64_t size = impl_->model->size();
  for (const auto& token : impl_->added) size = std::max<int64_t>(size, token.id + 1);
  return size;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int64_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    std::string token = id_to_token(id);
    if (!token.empty()) tokens.push_back(std::move(token));
  }
  if (!impl_->decoder) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  std::string text;
  for (const auto& part : impl_->decoder->decode_chain(std::move(tokens))) text += part;
  return text;
}

}  // namespace remora
