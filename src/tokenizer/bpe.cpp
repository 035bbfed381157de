// BPE encoding as in Hugging Face's Rust crate: characters (or their <0xXX> bytes) as symbols, then
// repeatedly apply the lowest-ranked merge, leftmost first, until none applies.
#include "tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "tokenizer/token_id.h"
#include "core/error.h"
#include "tokenizer/utf8.h"

namespace remora {
namespace {

constexpr size_t kCacheWordLimit = 256;   // longer words are not cached
constexpr size_t kCacheEntryLimit = 1 << 18;

std::string optional_string(const nlohmann::json& model, const char* key) {
  const auto it = model.find(key);
  return it == model.end() || it->is_null() ? std::string() : it->get<std::string>();
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model, const std::string& where) {
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") fail(where, ": unsupported model type '", type, "' (supported: BPE)");
  if (model.contains("dropout") && !model.at("dropout").is_null() && model.at("dropout").get<double>() > 0) {
    fail(where, ": model.dropout is not supported (BPE dropout is a training-time option)");
  }
  for (const auto& [token, id] : model.at("vocab").items()) {
    const int32_t value = token_id(id, where + ": model.vocab['" + token + "']");
    vocab_[token] = value;
    if (static_cast<size_t>(value) >= id_to_token_.size()) id_to_token_.resize(value + 1);
    id_to_token_[value] = token;
  }
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);
  ignore_merges_ = model.value("ignore_merges", false);
  continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix");
  end_of_word_suffix_ = optional_string(model, "end_of_word_suffix");
  const std::string unk = optional_string(model, "unk_token");
  if (!unk.empty()) {
    const auto it = vocab_.find(unk);
    REMORA_CHECK(it != vocab_.end(), where, ": model.unk_token '", unk, "' is not in model.vocab");
    unk_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto it = vocab_.find(name);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  const auto& merges = model.at("merges");
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (const auto& merge : merges) {
    std::string left, right;
    if (merge.is_string()) {
      // Legacy spelling "a b"; tokens never contain a space in files that use it.
      const std::string text = merge.get<std::string>();
      const size_t space = text.find(' ');
      REMORA_CHECK(space != std::string::npos, where, ": model.merges[", rank, "] '", text,
                   "' is not two tokens separated by a space");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      fail(where, ": model.merges[", rank, "] must be \"a b\" or [\"a\", \"b\"]");
    }
    const auto a = vocab_.find(left), b = vocab_.find(right), c = vocab_.find(left + right);
    if (a == vocab_.end() || b == vocab_.end() || c == vocab_.end()) {
      fail(where, ": model.merges[", rank, "] ('", left, "', '", right, "') uses a token missing from model.vocab");
    }
    merges_.emplace(pair_key(a->second, b->second), Merge{rank, c->second});
    ++rank;
  }
}

std::optional<int32_t> BpeModel::token_to_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string empty;
  if (id < 0 || id >= size()) return empty;
  return id_to_token_[id];
}

std::vector<int32_t> BpeModel::merge_word(const std::string& word) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool last_was_unk = false;
  auto push = [&](int32_t id) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t start = pos;
    const size_t length = std::min(utf8::sequence_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    pos += length;
    std::string piece = word.substr(start, length);
    if (start > 0) piece.insert(0, continuing_subword_prefix_);
    if (pos == word.size()) piece += end_of_word_suffix_;
    const auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      push(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t i = start; i < pos; ++i) all = all && byte_ids_[static_cast<unsigned char>(word[i])] >= 0;
      if (all) {
        for (size_t i = start; i < pos; ++i) push(byte_ids_[static_cast<unsigned char>(word[i])]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_) {
      if (!(fuse_unk_ && last_was_unk)) push(*unk_);
      last_was_unk = true;
    }
    // Without an unk token the character is dropped, as the Rust crate does.
  }
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator<(const Candidate& other) const {
      // priority_queue pops the largest: invert so the lowest rank, then leftmost, comes first.
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip stale entries whose pair has changed since they were queued.
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void BpeModel::tokenize(const std::string& word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheWordLimit;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = merge_word(word);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheEntryLimit) cache_.clear();
    cache_.emplace(word, std::move(ids));
  }
}

}  // namespace remora
