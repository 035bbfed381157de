// The tree-walking interpreter. Scopes follow Jinja2: a for-loop body gets its own scope each
// iteration (so {% set %} inside a loop does not leak out; namespace() objects are how templates
// carry state), while if-blocks share the enclosing scope.
#include "tokenizer/jinja/template.h"

#include <cmath>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/limits.h"
#include "tokenizer/jinja/parser.h"

namespace remora::jinja {
namespace {

struct LoopSignal {
  bool is_break;
};

class Interpreter {
 public:
  Interpreter(const std::string& name, const Object& variables) : name_(name) {
    frames_.emplace_back();
    for (const auto& [k, v] : builtin_globals(name)) frames_.back()[k] = v;
    for (const auto& [k, v] : variables) frames_.back()[k] = v;
  }

  void run(const Body& body, std::string& out) {
    for (const auto& node : body) exec(*node, out);
  }

 private:
  std::string where(const std::string& tag) const { return name_ + ": '" + excerpt(tag) + "'"; }

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      const auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value();
  }

  // Counts `cost` steps of work against the render's budget (big values cost in proportion to their
  // size, so a loop over huge strings is bounded in time as well as in count).
  void step(const std::string& tag, int64_t cost = 1) {
    steps_ += cost;
    if (steps_ > kMaxRenderSteps) {
      fail(where(tag), ": rendering takes more than ", kMaxRenderSteps, " steps (a loop too long?)");
    }
  }

  void exec(const Node& node, std::string& out) {
    step(node.text);
    switch (node.kind) {
      case Node::Kind::Text:
      case Node::Kind::Output:
        out += node.kind == Node::Kind::Text ? node.text : eval(*node.expr, node.text).to_output();
        if (out.size() > kMaxStringBytes) fail(name_, ": rendered output is longer than ", kMaxStringBytes, " bytes");
        return;
      case Node::Kind::If:
        for (const auto& [condition, body] : node.branches) {
          if (eval(*condition, node.text).truthy()) {
            run(body, out);
            return;
          }
        }
        run(node.else_body, out);
        return;
      case Node::Kind::For: exec_for(node, out); return;
      case Node::Kind::Set: {
        Value value = eval(*node.expr, node.text);
        const std::string& target = node.targets[0];
        const size_t dot = target.find('.');
        if (dot == std::string::npos) {
          frames_.back()[target] = std::move(value);
        } else {
          const Value object = lookup(target.substr(0, dot));
          if (!object.is_object()) fail(where(node.text), ": cannot set an attribute of a ", object.type_name());
          object.set(target.substr(dot + 1), std::move(value));
        }
        return;
      }
      case Node::Kind::Break: throw LoopSignal{true};
      case Node::Kind::Continue: throw LoopSignal{false};
    }
  }

  void exec_for(const Node& node, std::string& out) {
    const Value iterable = eval(*node.expr, node.text);
    Array items;
    if (iterable.is_object()) {
      // Iterating a dict gives its keys; "for k, v in d.items()" is the usual form.
      for (const auto& [k, v] : iterable.object()) items.push_back(Value(k));
    } else if (iterable.is_array()) {
      items = iterable.array();
    } else if (iterable.is_string()) {
      items = apply_filter("list", iterable, {}, {}, where(node.text)).array();
    } else if (!iterable.is_undefined() && !iterable.is_none()) {
      fail(where(node.text), ": cannot loop over a ", iterable.type_name());
    } else if (iterable.is_none()) {
      fail(where(node.text), ": cannot loop over none");
    }
    auto bind = [&](const Value& item) {
      if (node.targets.size() == 1) {
        frames_.back()[node.targets[0]] = item;
        return;
      }
      if (!item.is_array() || item.array().size() != node.targets.size()) {
        fail(where(node.text), ": cannot unpack ", item.repr(), " into ", node.targets.size(), " names");
      }
      for (size_t k = 0; k < node.targets.size(); ++k) frames_.back()[node.targets[k]] = item.array()[k];
    };
    if (node.filter) {
      Array kept;
      for (const auto& item : items) {
        frames_.emplace_back();
        bind(item);
        const bool keep = eval(*node.filter, node.text).truthy();
        frames_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      run(node.else_body, out);
      return;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      step(node.text);  // an empty body still costs its iterations
      frames_.emplace_back();
      Object loop{{"index0", Value(i)},
                  {"index", Value(i + 1)},
                  {"revindex0", Value(n - i - 1)},
                  {"revindex", Value(n - i)},
                  {"first", Value(i == 0)},
                  {"last", Value(i == n - 1)},
                  {"length", Value(n)},
                  {"previtem", i > 0 ? items[i - 1] : Value()},
                  {"nextitem", i + 1 < n ? items[i + 1] : Value()}};
      frames_.back()["loop"] = Value(loop);
      bind(items[i]);
      bool stop = false;
      try {
        run(node.body, out);
      } catch (const LoopSignal& signal) {
        stop = signal.is_break;
      }
      frames_.pop_back();
      if (stop) break;
    }
  }

  // As Python: a slice bound or step is an integer (a bool counts as one) or None.
  int64_t slice_integer(const Value& v, const std::string& tag) const {
    if (v.kind() == Value::Kind::Int) return v.as_int();
    if (v.kind() == Value::Kind::Bool) return static_cast<int64_t>(v.as_number());
    fail(where(tag), ": slice indices must be integers or none, not ", v.type_name());
  }

  int64_t slice_index(const Value& v, int64_t size, bool present, int64_t fallback, const std::string& tag) const {
    if (!present || v.is_none()) return fallback;
    int64_t i = slice_integer(v, tag);
    if (i < 0) i = std::max<int64_t>(i, -size - 1) + size;  // no overflow from -2^63; clamped below
    return i;
  }

  // Every value is checked as it is made, so no string or list outgrows the limits by more than one
  // step (operators check before building what could be far larger).
  Value eval(const Expr& e, const std::string& tag) {
    step(tag);
    Value value = eval_unchecked(e, tag);
    if (value.is_string() && value.as_string().size() > kMaxStringBytes) {
      fail(where(tag), ": a string longer than ", kMaxStringBytes, " bytes");
    }
    if (value.is_array() && value.array().size() > kMaxListItems) fail(where(tag), ": a list longer than ", kMaxListItems, " items");
    if (value.is_string()) step(tag, static_cast<int64_t>(value.as_string().size() / 64));
    if (value.is_array()) step(tag, static_cast<int64_t>(value.array().size()));
    return value;
  }

  Value eval_unchecked(const Expr& e, const std::string& tag) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::Literal: return e.literal;
      case K::Name: return lookup(e.name);
      case K::List: {
        Array items;
        for (const auto& item : e.args) items.push_back(eval(*item, tag));
        return Value(items);
      }
      case K::Dict: {
        Object members;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          members.emplace_back(eval(*e.args[i], tag).to_output(), eval(*e.args[i + 1], tag));
        }
        return Value(members);
      }
      case K::Attr: {
        const Value object = eval(*e.a, tag);
        if (object.is_undefined()) fail(where(tag), ": '", e.name, "' of an undefined value");
        return object.get(e.name);  // undefined for missing members and non-objects
      }
      case K::Index: return index(eval(*e.a, tag), eval(*e.b, tag), tag);
      case K::Slice: return slice(e, tag);
      case K::Call: return call(e, tag);
      case K::Filter: {
        std::vector<Value> args;
        for (const auto& a : e.args) args.push_back(eval(*a, tag));
        Kwargs kwargs;
        for (const auto& [k, v] : e.kwargs) kwargs.emplace_back(k, eval(*v, tag));
        return apply_filter(e.name, eval(*e.a, tag), args, kwargs, where(tag));
      }
      case K::Test: {
        std::vector<Value> args;
        for (const auto& a : e.args) args.push_back(eval(*a, tag));
        return Value(apply_test(e.name, eval(*e.a, tag), args, where(tag)) != e.negated);
      }
      case K::Not: return Value(!eval(*e.a, tag).truthy());
      case K::Neg: {
        const Value v = eval(*e.a, tag);
        if (v.kind() == Value::Kind::Int && v.as_int() != INT64_MIN) return Value(-v.as_int());
        if (v.is_number()) return Value(-v.as_number());
        fail(where(tag), ": cannot negate a ", v.type_name());
      }
      case K::And: {
        Value left = eval(*e.a, tag);
        return left.truthy() ? eval(*e.b, tag) : left;
      }
      case K::Or: {
        Value left = eval(*e.a, tag);
        return left.truthy() ? left : eval(*e.b, tag);
      }
      case K::Cond:
        if (eval(*e.a, tag).truthy()) return eval(*e.b, tag);
        return e.c ? eval(*e.c, tag) : Value();
      case K::Binary: return binary(e.name, eval(*e.a, tag), eval(*e.b, tag), tag);
    }
    return Value();
  }

  Value index(const Value& object, const Value& key, const std::string& tag) {
    if (object.is_string()) step(tag, static_cast<int64_t>(object.as_string().size()));  // split into characters below
    if (object.is_array() || object.is_string()) {
      if (key.kind() != Value::Kind::Int) fail(where(tag), ": index a ", object.type_name(), " with a ", key.type_name());
      const Array items = object.is_array() ? object.array() : apply_filter("list", object, {}, {}, where(tag)).array();
      int64_t i = key.as_int();
      if (i < 0) i += static_cast<int64_t>(items.size());
      if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value();
      return items[static_cast<size_t>(i)];
    }
    if (object.is_object()) return object.get(key.to_output());
    if (object.is_undefined()) fail(where(tag), ": subscript of an undefined value");
    return Value();
  }

  Value slice(const Expr& e, const std::string& tag) {
    const Value object = eval(*e.a, tag);
    Value parts[3];
    for (int k = 0; k < 3; ++k) {
      if (e.has[k]) parts[k] = eval(*e.args[k], tag);
    }
    const bool is_string = object.is_string();
    if (!object.is_array() && !is_string) fail(where(tag), ": cannot slice a ", object.type_name());
    step(tag, static_cast<int64_t>(is_string ? object.as_string().size() : object.array().size()));
    // A string is sliced by characters through their byte offsets: one Value per character would cost
    // ~100 bytes and an allocation each (a template slicing megabyte strings took seconds).
    const std::vector<size_t> starts = is_string ? char_starts(object.as_string()) : std::vector<size_t>();
    const int64_t n = static_cast<int64_t>(is_string ? starts.size() - 1 : object.array().size());
    const int64_t step = e.has[2] && !parts[2].is_none() ? slice_integer(parts[2], tag) : 1;
    if (step == 0) fail(where(tag), ": slice step must not be zero");
    // Python's clamping rules for each direction.
    int64_t start = slice_index(parts[0], n, e.has[0], step > 0 ? 0 : n - 1, tag);
    int64_t stop = slice_index(parts[1], n, e.has[1], step > 0 ? n : -1, tag);
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, n);
      stop = std::clamp<int64_t>(stop, 0, n);
    } else {
      start = std::clamp<int64_t>(start, -1, n - 1);
      if (e.has[1] && !parts[1].is_none()) stop = std::clamp<int64_t>(stop, -1, n - 1);
    }
    Array out;
    std::string text;
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
      const auto at = static_cast<size_t>(i);
      if (is_string) {
        text.append(object.as_string(), starts[at], starts[at + 1] - starts[at]);
      } else {
        out.push_back(object.array()[at]);
      }
      if (__builtin_add_overflow(i, step, &i)) break;  // a step near 2^63 ends the slice
    }
    return is_string ? Value(text) : Value(out);
  }

  Value call(const Expr& e, const std::string& tag) {
    std::vector<Value> args;
    for (const auto& a : e.args) args.push_back(eval(*a, tag));
    Kwargs kwargs;
    for (const auto& [k, v] : e.kwargs) kwargs.emplace_back(k, eval(*v, tag));
    if (e.a->kind == Expr::Kind::Attr) {
      const Value object = eval(*e.a->a, tag);
      const Value member = object.is_object() ? object.get(e.a->name) : Value();
      if (member.kind() == Value::Kind::Function) return member.callable()(args, kwargs);
      if (object.is_undefined()) fail(where(tag), ": method '", e.a->name, "' of an undefined value");
      return call_method(object, e.a->name, args, kwargs, where(tag));
    }
    const Value callee = eval(*e.a, tag);
    if (callee.kind() != Value::Kind::Function) {
      fail(where(tag), ": '", e.a->kind == Expr::Kind::Name ? e.a->name : std::string("expression"),
           "' is not a function (unsupported or undefined)");
    }
    return callee.callable()(args, kwargs);
  }

  Value binary(const std::string& op, const Value& a, const Value& b, const std::string& tag) {
    if (op == "==") return Value(a == b);
    if (op == "!=") return Value(!(a == b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.is_string()) {
        if (!a.is_string()) fail(where(tag), ": 'in <string>' needs a string on the left, got a ", a.type_name());
        found = b.as_string().find(a.as_string()) != std::string::npos;
      } else if (b.is_array()) {
        for (const auto& item : b.array()) found = found || item == a;
      } else if (b.is_object()) {
        found = !b.get(a.to_output()).is_undefined();
      } else if (!b.is_undefined()) {
        fail(where(tag), ": 'in' a ", b.type_name());
      }
      return Value(found != (op == "not in"));
    }
    if (op == "~") return Value(a.to_output() + b.to_output());
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp;
      if (a.is_number() && b.is_number()) {
        cmp = a.as_number() < b.as_number() ? -1 : a.as_number() > b.as_number() ? 1 : 0;
      } else if (a.is_string() && b.is_string()) {
        cmp = a.as_string().compare(b.as_string());
      } else {
        fail(where(tag), ": cannot compare a ", a.type_name(), " with a ", b.type_name());
      }
      if (op == "<") return Value(cmp < 0);
      if (op == ">") return Value(cmp > 0);
      if (op == "<=") return Value(cmp <= 0);
      return Value(cmp >= 0);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_array() && b.is_array()) {
        if (a.array().size() + b.array().size() > kMaxListItems) fail(where(tag), ": a list longer than ", kMaxListItems, " items");
        Array joined = a.array();
        joined.insert(joined.end(), b.array().begin(), b.array().end());
        return Value(joined);
      }
    }
    if (op == "*" && a.is_string() && b.kind() == Value::Kind::Int) {
      if (b.as_int() > 0 && static_cast<double>(a.as_string().size()) * b.as_int() > kMaxStringBytes) {
        fail(where(tag), ": a string longer than ", kMaxStringBytes, " bytes");
      }
      std::string out;
      for (int64_t i = 0; i < b.as_int(); ++i) out += a.as_string();
      return Value(out);
    }
    if (!a.is_number() || !b.is_number()) {
      fail(where(tag), ": unsupported operand types for ", op, ": ", a.type_name(), " and ", b.type_name());
    }
    const bool ints = a.kind() == Value::Kind::Int && b.kind() == Value::Kind::Int;
    const double x = a.as_number(), y = b.as_number();
    // Python's ints do not overflow; remora's are 64-bit and say so rather than wrap.
    int64_t exact = 0;
    const auto checked = [&](bool overflowed) {
      if (overflowed) fail(where(tag), ": integer overflow in ", a.repr(), " ", op, " ", b.repr());
      return Value(exact);
    };
    if (op == "+") return ints ? checked(__builtin_add_overflow(a.as_int(), b.as_int(), &exact)) : Value(x + y);
    if (op == "-") return ints ? checked(__builtin_sub_overflow(a.as_int(), b.as_int(), &exact)) : Value(x - y);
    if (op == "*") return ints ? checked(__builtin_mul_overflow(a.as_int(), b.as_int(), &exact)) : Value(x * y);
    if (op == "**") {
      const double power = std::pow(x, y);
      if (!ints || b.as_int() < 0) return Value(power);
      if (!(std::fabs(power) < 9.2e18)) checked(true);
      return Value(static_cast<int64_t>(power));
    }
    if (y == 0) fail(where(tag), ": division by zero");
    if (op == "/") return Value(x / y);
    if (op == "//") {
      if (!ints) return Value(std::floor(x / y));
      if (a.as_int() == INT64_MIN && b.as_int() == -1) checked(true);
      const int64_t q = a.as_int() / b.as_int();
      return Value(q - ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))));  // floor
    }
    if (op == "%") {
      if (ints) {
        if (b.as_int() == -1) return Value(int64_t{0});  // INT64_MIN % -1 traps in C++
        int64_t r = a.as_int() % b.as_int();
        if (r != 0 && ((r < 0) != (b.as_int() < 0))) r += b.as_int();  // Python's sign rule
        return Value(r);
      }
      return Value(x - std::floor(x / y) * y);
    }
    fail(where(tag), ": unsupported operator ", op);
  }

  const std::string& name_;
  std::vector<std::unordered_map<std::string, Value>> frames_;
  int64_t steps_ = 0;
};

}  // namespace

Template::Template(const std::string& source, const std::string& name) : name_(name), body_(parse(lex(source, name), name)) {}

std::string Template::render(const Object& variables) const {
  Interpreter interpreter(name_, variables);
  std::string out;
  interpreter.run(body_, out);
  return out;
}

}  // namespace remora::jinja
