// Post-processors. Only single sequences are encoded by remora, so TemplateProcessing's "pair"
// template is read for validity but not used.
#include "tokenizer/post_processors.h"

#include <map>

#include "core/error.h"

namespace remora {
namespace {

class Template : public PostProcessor {
 public:
  Template(const nlohmann::json& spec, const std::string& where) {
    std::map<std::string, std::vector<int32_t>> specials;
    for (const auto& [name, special] : spec.at("special_tokens").items()) {
      specials[name] = special.at("ids").get<std::vector<int32_t>>();
    }
    for (const auto& item : spec.at("single")) {
      if (item.contains("Sequence")) {
        const std::string id = item.at("Sequence").at("id").get<std::string>();
        REMORA_CHECK(id == "A", where, ": single template refers to sequence '", id, "' (only A exists)");
        items_.push_back({true, {}});
      } else if (item.contains("SpecialToken")) {
        const std::string name = item.at("SpecialToken").at("id").get<std::string>();
        const auto it = specials.find(name);
        REMORA_CHECK(it != specials.end(), where, ": special token '", name, "' is not in special_tokens");
        items_.push_back({false, it->second});
      } else {
        fail(where, ": template item must be Sequence or SpecialToken");
      }
    }
  }
  std::vector<int32_t> process(std::vector<int32_t> ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : items_) {
      if (item.sequence) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), item.ids.begin(), item.ids.end());
      }
    }
    return out;
  }

 private:
  struct Item {
    bool sequence;
    std::vector<int32_t> ids;
  };
  std::vector<Item> items_;
};

// ByteLevel only trims offsets, which remora does not track: ids pass through.
class Identity : public PostProcessor {
 public:
  std::vector<int32_t> process(std::vector<int32_t> ids) const override { return ids; }
};

class Sequence : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids) const override {
    for (const auto& part : parts_) ids = part->process(std::move(ids));
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return nullptr;
  const std::string type = spec.value("type", "");
  const std::string here = where + " (" + type + ")";
  if (type == "TemplateProcessing") return std::make_unique<Template>(spec, here);
  if (type == "ByteLevel") return std::make_unique<Identity>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& part : spec.at("processors")) {
      if (auto made = make_post_processor(part, where)) parts.push_back(std::move(made));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  fail(where, ": unsupported post_processor type '", type,
       "' (supported: TemplateProcessing, ByteLevel, Sequence)");
}

}  // namespace remora
