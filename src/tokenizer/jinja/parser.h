// Parses lexed chunks into a syntax tree; anything outside the supported subset is an Error that
// quotes the construct.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace remora::jinja {

Body parse(const std::vector<Chunk>& chunks, const std::string& name);

}  // namespace remora::jinja
