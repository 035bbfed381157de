// A compiled Jinja template (the subset chat templates use), rendered with Python/Jinja2 semantics.
#pragma once

#include <string>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace remora::jinja {

class Template {
 public:
  // Throws Error quoting the construct when the template uses something outside the subset.
  Template(const std::string& source, const std::string& name);
  // `variables` are the template's globals, on top of range/namespace/raise_exception/strftime_now.
  std::string render(const Object& variables) const;

 private:
  std::string name_;
  Body body_;
};

}  // namespace remora::jinja
