// Filters, tests and methods, with Python/Jinja2 semantics for the cases chat templates hit.
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "core/error.h"
#include "tokenizer/jinja/limits.h"
#include "tokenizer/utf8.h"

namespace remora::jinja {
namespace {

const char* const kSpace = " \t\n\r\f\v";

std::string strip(const std::string& text, const std::string& chars, bool left, bool right) {
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end && chars.find(text[begin]) != std::string::npos) ++begin;
  }
  if (right) {
    while (end > begin && chars.find(text[end - 1]) != std::string::npos) --end;
  }
  return text.substr(begin, end - begin);
}

std::string chars_arg(const std::vector<Value>& args) {
  return !args.empty() && args[0].is_string() ? args[0].as_string() : std::string(kSpace);
}

std::string ascii_upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const Value* kwarg(const Kwargs& kwargs, const char* key) {
  for (const auto& [k, v] : kwargs) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value arg_or(const std::vector<Value>& args, const Kwargs& kwargs, size_t index, const char* key, Value fallback) {
  if (index < args.size()) return args[index];
  if (const Value* v = kwarg(kwargs, key)) return *v;
  return fallback;
}

int64_t length_of(const Value& v, const std::string& where) {
  if (v.is_string()) {
    int64_t n = 0;
    for (unsigned char c : v.as_string()) n += (c & 0xC0) != 0x80;  // code points, as Python counts
    return n;
  }
  if (v.is_array()) return static_cast<int64_t>(v.array().size());
  if (v.is_object()) return static_cast<int64_t>(v.object().size());
  if (v.is_undefined()) return 0;
  fail(where, ": length of a ", v.type_name());
}

Array items_of(const Value& v) {
  Array items;
  for (const auto& [k, value] : v.object()) items.push_back(Value(Array{Value(k), value}));
  return items;
}

Array as_list(const Value& v, const std::string& where) {
  if (v.is_array()) return v.array();
  if (v.is_object()) {
    Array keys;
    for (const auto& [k, value] : v.object()) keys.push_back(Value(k));
    return keys;
  }
  if (v.is_string()) {
    Array chars;
    const std::string& s = v.as_string();
    const std::vector<size_t> starts = char_starts(s);
    for (size_t i = 0; i + 1 < starts.size(); ++i) chars.push_back(Value(s.substr(starts[i], starts[i + 1] - starts[i])));
    return chars;
  }
  if (v.is_undefined()) return {};
  fail(where, ": cannot iterate over a ", v.type_name());
}

std::vector<std::string> split(const std::string& text, const Value& separator, int64_t max_split) {
  std::vector<std::string> parts;
  if (separator.is_string()) {
    const std::string& sep = separator.as_string();
    size_t last = 0;
    for (size_t at = text.find(sep); at != std::string::npos && !sep.empty() &&
                                     (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split);
         at = text.find(sep, last)) {
      parts.push_back(text.substr(last, at - last));
      last = at + sep.size();
    }
    parts.push_back(text.substr(last));
    return parts;
  }
  // No separator: runs of whitespace, leading/trailing ignored.
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::string(kSpace).find(text[i]) != std::string::npos) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && std::string(kSpace).find(text[j]) == std::string::npos) ++j;
    parts.push_back(text.substr(i, j - i));
    i = j;
  }
  return parts;
}

// A number as an int64, refusing what does not fit (a cast would be undefined behaviour).
int64_t integer(const Value& value, const std::string& where) {
  if (value.kind() == Value::Kind::Int) return value.as_int();
  const double x = value.as_number();
  if (!value.is_number() || !std::isfinite(x) || std::fabs(x) >= 9.2e18) {
    fail(where, ": expected an integer, got ", value.repr());
  }
  return static_cast<int64_t>(x);
}

std::string replace(const std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  if (to.size() > from.size()) {
    uint64_t count = 0;
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + from.size())) ++count;
    if (text.size() + count * (to.size() - from.size()) > kMaxStringBytes) {
      fail("replace() would make a string longer than ", kMaxStringBytes, " bytes");
    }
  }
  std::string out;
  size_t last = 0;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, last)) {
    out += text.substr(last, at - last) + to;
    last = at + from.size();
  }
  return out + text.substr(last);
}

std::string title(const std::string& text) {
  std::string out = text;
  bool start = true;
  for (auto& c : out) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
    start = !alpha;
  }
  return out;
}

void dump(const nlohmann::ordered_json& json, int indent, int depth, std::string& out) {
  const std::string newline = indent >= 0 ? "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ') : "";
  const std::string closing = indent >= 0 ? "\n" + std::string(static_cast<size_t>(indent * depth), ' ') : "";
  const std::string comma = indent >= 0 ? "," : ", ";
  if (json.is_array() && !json.empty()) {
    out += "[";
    for (size_t i = 0; i < json.size(); ++i) {
      out += (i ? comma : "") + newline;
      dump(json[i], indent, depth + 1, out);
    }
    out += closing + "]";
  } else if (json.is_object() && !json.empty()) {
    out += "{";
    bool first = true;
    for (const auto& [key, item] : json.items()) {
      out += (first ? "" : comma) + newline + nlohmann::ordered_json(key).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + ": ";
      dump(item, indent, depth + 1, out);
      first = false;
    }
    out += closing + "}";
  } else if (json.is_number_float()) {
    out += format_float(json.get<double>());
  } else {
    out += json.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::replace);
  }
}

}  // namespace

std::string to_json_text(const Value& value, int indent) {
  std::string out;
  dump(value.to_json(), indent, 0, out);
  return out;
}

Value apply_filter(const std::string& name, const Value& input, const std::vector<Value>& args,
                   const Kwargs& kwargs, const std::string& where) {
  if (name == "trim") return Value(strip(input.to_output(), chars_arg(args), true, true));
  if (name == "tojson") {
    const Value indent = arg_or(args, kwargs, 0, "indent", Value::none());
    return Value(to_json_text(input, indent.is_number() ? static_cast<int>(indent.as_number()) : -1));
  }
  if (name == "length" || name == "count") return Value(length_of(input, where));
  if (name == "upper") return Value(ascii_upper(input.to_output()));
  if (name == "lower") return Value(ascii_lower(input.to_output()));
  if (name == "title") return Value(title(input.to_output()));
  if (name == "capitalize") {
    std::string s = ascii_lower(input.to_output());
    if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    return Value(s);
  }
  if (name == "string") return Value(input.to_output());
  if (name == "safe" || name == "e" || name == "escape") {
    if (name != "safe") fail(where, ": filter '", name, "' is not supported (chat templates do not autoescape)");
    return input;
  }
  if (name == "int") {
    if (input.is_number()) return Value(static_cast<int64_t>(input.as_number()));
    if (input.is_string()) {
      try {
        return Value(static_cast<int64_t>(std::stoll(input.as_string())));
      } catch (...) {
      }
    }
    return Value(arg_or(args, kwargs, 0, "default", Value(int64_t{0})));
  }
  if (name == "float") return Value(input.is_number() ? input.as_number() : std::strtod(input.to_output().c_str(), nullptr));
  if (name == "abs") return input.kind() == Value::Kind::Int ? Value(std::abs(input.as_int())) : Value(std::abs(input.as_number()));
  if (name == "default" || name == "d") {
    const bool boolean = arg_or(args, kwargs, 1, "boolean", Value(false)).truthy();
    if (input.is_undefined() || (boolean && !input.truthy())) return arg_or(args, kwargs, 0, "default_value", Value(""));
    return input;
  }
  if (name == "first" || name == "last") {
    const Array items = as_list(input, where);
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value(as_list(input, where));
  if (name == "reverse") {
    if (input.is_string()) {
      Array chars = as_list(input, where);
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
      return Value(out);
    }
    Array items = as_list(input, where);
    std::reverse(items.begin(), items.end());
    return Value(items);
  }
  if (name == "items") {
    if (!input.is_object()) fail(where, ": items of a ", input.type_name());
    return Value(items_of(input));
  }
  if (name == "join") {
    const std::string sep = arg_or(args, kwargs, 0, "d", Value("")).to_output();
    const Value attribute = arg_or(args, kwargs, 1, "attribute", Value());
    std::string out;
    bool first = true;
    for (const auto& item : as_list(input, where)) {
      out += (first ? "" : sep) + (attribute.is_undefined() ? item : item.get(attribute.to_output())).to_output();
      first = false;
    }
    return Value(out);
  }
  if (name == "replace") {
    if (args.size() < 2) fail(where, ": replace needs two arguments");
    return Value(replace(input.to_output(), args[0].to_output(), args[1].to_output()));
  }
  if (name == "map") {
    const Value* attribute = kwarg(kwargs, "attribute");
    Array out;
    for (const auto& item : as_list(input, where)) {
      if (attribute) {
        out.push_back(item.get(attribute->to_output()));
      } else if (!args.empty()) {
        out.push_back(apply_filter(args[0].to_output(), item, {args.begin() + 1, args.end()}, {}, where));
      } else {
        fail(where, ": map needs a filter name or attribute=");
      }
    }
    return Value(out);
  }
  if (name == "selectattr" || name == "rejectattr") {
    if (args.empty()) fail(where, ": ", name, " needs an attribute name");
    Array out;
    for (const auto& item : as_list(input, where)) {
      const Value attr = item.get(args[0].to_output());
      const bool ok = args.size() >= 2 ? apply_test(args[1].to_output(), attr, {args.begin() + 2, args.end()}, where)
                                       : attr.truthy();
      if (ok == (name == "selectattr")) out.push_back(item);
    }
    return Value(out);
  }
  if (name == "unique") {
    Array out;
    for (const auto& item : as_list(input, where)) {
      if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
    }
    return Value(out);
  }
  fail(where, ": unsupported filter '", name, "'");
}

bool apply_test(const std::string& name, const Value& input, const std::vector<Value>& args, const std::string& where) {
  using K = Value::Kind;
  if (name == "defined") return !input.is_undefined();
  if (name == "undefined") return input.is_undefined();
  if (name == "none") return input.is_none();
  if (name == "string") return input.is_string();
  if (name == "number") return input.is_number();
  if (name == "integer") return input.kind() == K::Int;
  if (name == "float") return input.kind() == K::Float;
  if (name == "boolean") return input.kind() == K::Bool;
  if (name == "true") return input.kind() == K::Bool && input.as_bool();
  if (name == "false") return input.kind() == K::Bool && !input.as_bool();
  if (name == "mapping") return input.is_object();
  if (name == "sequence" || name == "iterable") return input.is_array() || input.is_string() || input.is_object();
  if (name == "callable") return input.kind() == K::Function;
  if (name == "even" || name == "odd") {
    if (input.kind() != K::Int) fail(where, ": '", name, "' test of a ", input.type_name());
    return (input.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    if (args.empty() || !args[0].is_number() || args[0].as_number() == 0) fail(where, ": divisibleby needs a number");
    const int64_t divisor = integer(args[0], where);
    if (divisor == 0) fail(where, ": divisibleby needs a non-zero integer");
    return divisor == -1 || integer(input, where) % divisor == 0;
  }
  if (name == "equalto" || name == "eq" || name == "sameas") {
    if (args.empty()) fail(where, ": '", name, "' needs an argument");
    return input == args[0];
  }
  if (name == "lower") return input.is_string() && ascii_lower(input.as_string()) == input.as_string();
  if (name == "upper") return input.is_string() && ascii_upper(input.as_string()) == input.as_string();
  fail(where, ": unsupported test '", name, "'");
}

Value call_method(const Value& object, const std::string& name, const std::vector<Value>& args,
                  const Kwargs& kwargs, const std::string& where) {
  if (object.is_string()) {
    const std::string& s = object.as_string();
    if (name == "strip") return Value(strip(s, chars_arg(args), true, true));
    if (name == "lstrip") return Value(strip(s, chars_arg(args), true, false));
    if (name == "rstrip") return Value(strip(s, chars_arg(args), false, true));
    if (name == "startswith" || name == "endswith") {
      if (args.empty() || !args[0].is_string()) fail(where, ": ", name, " needs a string");
      const std::string& affix = args[0].as_string();
      if (affix.size() > s.size()) return Value(false);
      return Value(name == "startswith" ? s.compare(0, affix.size(), affix) == 0
                                        : s.compare(s.size() - affix.size(), affix.size(), affix) == 0);
    }
    if (name == "split") {
      Array parts;
      const Value max_split = arg_or(args, kwargs, 1, "maxsplit", Value(int64_t{-1}));
      for (auto& part : split(s, arg_or(args, kwargs, 0, "sep", Value::none()), static_cast<int64_t>(max_split.as_number()))) {
        parts.push_back(Value(part));
      }
      return Value(parts);
    }
    if (name == "upper") return Value(ascii_upper(s));
    if (name == "lower") return Value(ascii_lower(s));
    if (name == "title") return Value(title(s));
    if (name == "capitalize") return apply_filter("capitalize", object, {}, {}, where);
    if (name == "replace") {
      if (args.size() < 2) fail(where, ": replace needs two arguments");
      return Value(replace(s, args[0].to_output(), args[1].to_output()));
    }
    if (name == "find") {
      if (args.empty()) fail(where, ": find needs an argument");
      const size_t at = s.find(args[0].to_output());
      return Value(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(at));
    }
    if (name == "join") {
      std::string out;
      bool first = true;
      for (const auto& item : as_list(args.empty() ? Value(Array{}) : args[0], where)) {
        out += (first ? "" : s) + item.to_output();
        first = false;
      }
      return Value(out);
    }
  }
  if (object.is_object()) {
    if (name == "items") return Value(items_of(object));
    if (name == "keys") return Value(as_list(object, where));
    if (name == "values") {
      Array values;
      for (const auto& [k, v] : object.object()) values.push_back(v);
      return Value(values);
    }
    if (name == "get") {
      if (args.empty()) fail(where, ": get needs a key");
      const Value found = object.get(args[0].to_output());
      return found.is_undefined() ? (args.size() > 1 ? args[1] : Value::none()) : found;
    }
  }
  if (object.is_array() && name == "append") {
    if (args.size() != 1) fail(where, ": append needs one argument");
    if (object.array().size() >= kMaxListItems) fail(where, ": a list longer than ", kMaxListItems, " items");
    object.array().push_back(args[0]);
    return Value::none();
  }
  fail(where, ": unsupported method '", name, "' of a ", object.type_name());
}

Object builtin_globals(const std::string& template_name) {
  Object globals;
  globals.emplace_back("raise_exception", Value::function([template_name](const std::vector<Value>& args, const Kwargs&) -> Value {
    fail(template_name, ": the template raised an exception: ", args.empty() ? std::string() : args[0].to_output());
  }));
  globals.emplace_back("namespace", Value::function([](const std::vector<Value>&, const Kwargs& kwargs) {
    Object members(kwargs.begin(), kwargs.end());
    return Value(members);
  }));
  globals.emplace_back("range", Value::function([template_name](const std::vector<Value>& args, const Kwargs&) {
    int64_t start = 0, stop = 0, step = 1;
    if (args.size() == 1) {
      stop = integer(args[0], template_name + ": range()");
    } else if (args.size() >= 2) {
      start = integer(args[0], template_name + ": range()");
      stop = integer(args[1], template_name + ": range()");
      if (args.size() > 2) step = integer(args[2], template_name + ": range()");
    }
    if (step == 0) fail(template_name, ": range() step must not be zero");
    const long double count = (static_cast<long double>(stop) - start) / step;
    if (count > kMaxListItems) fail(template_name, ": range() of ", count, " numbers is longer than the limit of ", kMaxListItems);
    Array values;
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
      values.push_back(Value(i));
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return Value(values);
  }));
  globals.emplace_back("strftime_now", Value::function([](const std::vector<Value>& args, const Kwargs&) {
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[256];
    const std::string format = args.empty() ? "%Y-%m-%d" : args[0].to_output();
    const size_t n = std::strftime(buffer, sizeof(buffer), format.c_str(), &local);
    return Value(std::string(buffer, n));
  }));
  return globals;
}

std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 0 || !utf8::is_continuation(s[i])) starts.push_back(i);
  }
  starts.push_back(s.size());
  return starts;
}

}  // namespace remora::jinja
