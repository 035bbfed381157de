// Jinja filters, tests, methods of str/list/dict, and global functions (range, namespace,
// raise_exception, strftime_now) that chat templates use.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace remora::jinja {

// `where` (template name and tag) prefixes errors, which also name the unsupported filter/test.
Value apply_filter(const std::string& name, const Value& input, const std::vector<Value>& args,
                   const Kwargs& kwargs, const std::string& where);
bool apply_test(const std::string& name, const Value& input, const std::vector<Value>& args,
                const std::string& where);
// A method of a str, list or dict value (e.g. "abc".startswith("a")).
Value call_method(const Value& object, const std::string& name, const std::vector<Value>& args,
                  const Kwargs& kwargs, const std::string& where);
// Globals every template sees.
Object builtin_globals(const std::string& template_name);

// Byte offset of each character (UTF-8 code point, as Python indexes str) of `s`, then s.size().
std::vector<size_t> char_starts(const std::string& s);
// tojson as transformers defines it: json.dumps(ensure_ascii=False, sort_keys=False), optional indent.
std::string to_json_text(const Value& value, int indent);

}  // namespace remora::jinja
