// Syntax tree of the Jinja subset: expressions and statements.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace remora::jinja {

struct Expr;
using ExprPtr = std::shared_ptr<Expr>;

struct Expr {
  enum class Kind { Literal, Name, List, Dict, Attr, Index, Slice, Call, Filter, Test, Not, Neg, Binary, And, Or, Cond };
  Kind kind;
  Value literal;
  std::string name;  // variable, attribute, operator, filter or test name
  ExprPtr a, b, c;   // operands: object/left/condition, index/right/then, else / slice step
  std::vector<ExprPtr> args;  // call, filter and test arguments; list items; dict keys and values
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;       // "is not"
  bool has[3] = {false, false, false};  // slice parts present
};

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind { Text, Output, If, For, Set, Break, Continue };
  Kind kind;
  std::string text;                   // Text; for others the tag source, quoted in errors
  ExprPtr expr;                       // Output value, For iterable, Set value
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: condition + body per if/elif
  Body body, else_body;               // For body/else; If else
  std::vector<std::string> targets;   // For loop variables; Set target (name or name.attr)
  ExprPtr filter;                     // For ... if condition
};

}  // namespace remora::jinja
