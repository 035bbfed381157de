// Value semantics follow Python (truthiness, str/repr, equality), since chat templates are written
// against Jinja2 running in Python.
#include "tokenizer/jinja/value.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "tokenizer/jinja/limits.h"

namespace remora::jinja {
namespace {

// Counts how deep repr/to_json/== are inside nested lists and dicts.
thread_local int t_value_depth = 0;
struct ValueDepth {
  ValueDepth() {
    if (++t_value_depth > kMaxValueDepth) {
      --t_value_depth;
      fail("template value nested deeper than ", kMaxValueDepth, " levels (a list that contains itself?)");
    }
  }
  ~ValueDepth() { --t_value_depth; }
  ValueDepth(const ValueDepth&) = delete;
  ValueDepth& operator=(const ValueDepth&) = delete;
};

}  // namespace

Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}
Value::Value(bool b) : kind_(Kind::Bool), b_(b) {}
Value::Value(int64_t i) : kind_(Kind::Int), i_(i) {}
Value::Value(double f) : kind_(Kind::Float), f_(f) {}
Value::Value(std::string s) : kind_(Kind::String), s_(std::move(s)) {}
Value::Value(Array a) : kind_(Kind::Array), a_(std::make_shared<Array>(std::move(a))) {}
Value::Value(Object o) : kind_(Kind::Object), o_(std::make_shared<Object>(std::move(o))) {}

Value Value::function(Function f) {
  Value v;
  v.kind_ = Kind::Function;
  v.fn_ = std::make_shared<Function>(std::move(f));
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return Value(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array items;
      for (const auto& item : json) items.push_back(from_json(item));
      return Value(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object members;
      for (const auto& [key, item] : json.items()) members.emplace_back(key, from_json(item));
      return Value(std::move(members));
    }
    default: return Value();
  }
}

Value Value::get(const std::string& key) const {
  if (kind_ != Kind::Object) return Value();
  for (const auto& [k, v] : *o_) {
    if (k == key) return v;
  }
  return Value();
}

void Value::set(const std::string& key, Value value) const {
  for (auto& [k, v] : *o_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  o_->emplace_back(key, std::move(value));
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0;
    case Kind::String: return !s_.empty();
    case Kind::Array: return !a_->empty();
    case Kind::Object: return !o_->empty();
    case Kind::Function: return true;
  }
  return false;
}

std::string format_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  std::string text = buffer;
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

namespace {

std::string quote_python(const std::string& s) {
  // Python prefers single quotes unless the string contains one and no double quote.
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = use_double ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out + q;
}

}  // namespace

std::string Value::repr() const {
  const ValueDepth depth;
  switch (kind_) {
    case Kind::String: return quote_python(s_);
    case Kind::Array: {
      std::string out = "[";
      for (size_t i = 0; i < a_->size(); ++i) out += (i ? ", " : "") + (*a_)[i].repr();
      return out + "]";
    }
    case Kind::Object: {
      std::string out = "{";
      for (size_t i = 0; i < o_->size(); ++i) {
        out += (i ? ", " : "") + quote_python((*o_)[i].first) + ": " + (*o_)[i].second.repr();
      }
      return out + "}";
    }
    default: return to_output();
  }
}

std::string Value::to_output() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return b_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::Float: return format_float(f_);
    case Kind::String: return s_;
    case Kind::Function: return "<function>";
    default: return repr();
  }
}

nlohmann::ordered_json Value::to_json() const {
  const ValueDepth depth;
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return nullptr;
    case Kind::Bool: return b_;
    case Kind::Int: return i_;
    case Kind::Float: return f_;
    case Kind::String: return s_;
    case Kind::Array: {
      auto out = nlohmann::ordered_json::array();
      for (const auto& item : *a_) out.push_back(item.to_json());
      return out;
    }
    case Kind::Object: {
      auto out = nlohmann::ordered_json::object();
      for (const auto& [k, v] : *o_) out[k] = v.to_json();
      return out;
    }
    case Kind::Function: return "<function>";
  }
  return nullptr;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "undefined";
    case Kind::None: return "none";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Array: return "list";
    case Kind::Object: return "dict";
    case Kind::Function: return "function";
  }
  return "?";
}

bool operator==(const Value& a, const Value& b) {
  if ((a.is_number() || a.kind_ == Value::Kind::Bool) && (b.is_number() || b.kind_ == Value::Kind::Bool)) {
    return a.as_number() == b.as_number();
  }
  if (a.kind_ != b.kind_) return false;
  const ValueDepth depth;
  switch (a.kind_) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.s_ == b.s_;
    case Value::Kind::Array: return *a.a_ == *b.a_;
    case Value::Kind::Object: {
      if (a.o_->size() != b.o_->size()) return false;
      for (const auto& [k, v] : *a.o_) {
        if (!(b.get(k) == v)) return false;
      }
      return true;
    }
    default: return a.fn_ == b.fn_;
  }
}

}  // namespace remora::jinja
