// Values of the Jinja subset: Python-like undefined/none/bool/int/float/str/list/dict and callables.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace remora::jinja {

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;  // insertion-ordered, like a Python dict
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(const std::vector<Value>& args, const Kwargs& kwargs)>;

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, Array, Object, Function };

  Value() = default;  // undefined
  static Value none();
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double f);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  Value(Array a);
  Value(Object o);
  static Value function(Function f);
  // Object members keep the document's order with ordered_json (tojson output depends on it).
  static Value from_json(const nlohmann::ordered_json& json);
  static Value from_json(const nlohmann::json& json) { return from_json(nlohmann::ordered_json(json)); }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_number() const { return kind_ == Kind::Int ? static_cast<double>(i_) : kind_ == Kind::Bool ? b_ : f_; }
  const std::string& as_string() const { return s_; }
  // Arrays and objects are shared, as Python lists and dicts are references.
  Array& array() const { return *a_; }
  Object& object() const { return *o_; }
  const Function& callable() const { return *fn_; }

  // Object member, or undefined.
  Value get(const std::string& key) const;
  void set(const std::string& key, Value value) const;

  bool truthy() const;
  // What {{ value }} prints (Python's str()); undefined prints nothing.
  std::string to_output() const;
  // Python's repr(), used inside printed lists and dicts.
  std::string repr() const;
  nlohmann::ordered_json to_json() const;
  const char* type_name() const;

  friend bool operator==(const Value& a, const Value& b);

 private:
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<Array> a_;
  std::shared_ptr<Object> o_;
  std::shared_ptr<Function> fn_;
};

// Python's str(float).
std::string format_float(double value);

}  // namespace remora::jinja
