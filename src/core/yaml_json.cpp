// YAML nodes to JSON values, counting every value produced so aliases cannot multiply memory.
#include "core/yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <string>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"

namespace remora {
namespace {

class Converter {
 public:
  explicit Converter(const std::string& source) : source_(source) {}

  nlohmann::json convert(const YAML::Node& node, int depth) {
    if (++values_ > kMaxYamlValues) {
      fail(source_, ": YAML expands to more than ", kMaxYamlValues, " values (an alias bomb?)");
    }
    if (depth > kMaxJsonDepth) fail(source_, ": YAML nested deeper than ", kMaxJsonDepth, " levels");
    if (node.IsNull()) return nullptr;
    if (node.IsSequence()) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(convert(item, depth + 1));
      return out;
    }
    if (node.IsMap()) {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& item : node) {
        if (!item.first.IsScalar()) {
          fail(source_, ": line ", item.first.Mark().line + 1, ": a mapping key must be a plain value");
        }
        out[item.first.Scalar()] = convert(item.second, depth + 1);
      }
      return out;
    }
    return scalar(node);
  }

 private:
  static nlohmann::json scalar(const YAML::Node& node) {
    const std::string text = node.Scalar();
    if (node.Tag() == "!") return text;  // quoted: always a string
    if (text == "true" || text == "false") return text == "true";
    if (text == "null" || text == "~") return nullptr;
    try {
      size_t used = 0;
      const long long integer = std::stoll(text, &used);
      if (used == text.size()) return integer;
      const double number = std::stod(text, &used);
      if (used == text.size()) return number;
    } catch (const std::exception&) {
      // Out of range or not a number: kept as text, so the typed check names the key and the value.
    }
    return text;
  }

  const std::string& source_;
  int64_t values_ = 0;
};

}  // namespace

nlohmann::json parse_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(source, ": not valid YAML (line ", e.mark.line + 1, ": ", e.msg, ")");
  }
  return Converter(source).convert(root, 0);
}

nlohmann::json read_yaml_file(const std::string& path) { return parse_yaml(read_text_file(path, kMaxYamlFileBytes), path); }

}  // namespace remora
