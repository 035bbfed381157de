// Recursive-descent parser with Jinja2's operator precedence: conditional < or < and < not <
// comparison < + - < ~ < * / // % < ** < unary minus < filters/tests < postfix.
#include "tokenizer/jinja/parser.h"

#include "core/error.h"

namespace remora::jinja {
namespace {

// Nesting of expressions (parentheses, lists, unary operators, and each link of an operator, filter
// or attribute chain) and of statements. Real chat templates stay below 30; the interpreter and the
// tree's destructor recurse once per level, so an unbounded depth would overflow the stack.
constexpr int kMaxNesting = 200;

ExprPtr make(Expr::Kind kind) {
  auto e = std::make_shared<Expr>();
  e->kind = kind;
  return e;
}

class ExprParser {
 public:
  ExprParser(const Chunk& chunk, const std::string& name) : tokens_(chunk.tokens), tag_(chunk.text), name_(name) {}

  [[noreturn]] void error(const std::string& what) const {
    fail(name_, ": ", what, " in '", excerpt(tag_), "'");
  }
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  bool at_end() const { return peek().type == Token::Type::End; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).type == Token::Type::Op && peek(ahead).text == op;
  }
  bool is_name(const char* word, size_t ahead = 0) const {
    return peek(ahead).type == Token::Type::Name && peek(ahead).text == word;
  }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* word) {
    if (!is_name(word)) return false;
    ++pos_;
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) error(std::string("expected '") + op + "'");
  }
  std::string expect_identifier() {
    if (peek().type != Token::Type::Name) error("expected a name");
    return tokens_[pos_++].text;
  }
  void expect_end() {
    if (!at_end()) error("unexpected '" + peek().text + "'");
  }

  // One more level of nesting for the guard's lifetime (or, with `links`, for a chain's links).
  class Nesting {
   public:
    // `levels`: 1 for a nested sub-expression; 0 for a chain, which calls deeper() per link.
    explicit Nesting(ExprParser& parser, int levels = 1) : parser_(parser) {
      for (int i = 0; i < levels; ++i) deeper();
    }
    ~Nesting() { parser_.depth_ -= levels_; }
    void deeper() {
      ++levels_;
      if (++parser_.depth_ > kMaxNesting) parser_.error("expression nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }

   private:
    ExprParser& parser_;
    int levels_ = 0;
  };

  ExprPtr expression() {
    Nesting nesting(*this);
    ExprPtr value = or_expr();
    if (accept_name("if")) {
      auto e = make(Expr::Kind::Cond);
      e->b = value;
      e->a = or_expr();
      if (accept_name("else")) e->c = expression();
      return e;
    }
    return value;
  }

  // An expression that stops before "if" (for-loop iterables, which may be followed by a filter).
  ExprPtr or_expr() {
    Nesting links(*this, 0);
    ExprPtr left = and_expr();
    while (accept_name("or")) {
      links.deeper();
      auto e = make(Expr::Kind::Or);
      e->a = left;
      e->b = and_expr();
      left = e;
    }
    return left;
  }

 private:
  ExprPtr and_expr() {
    Nesting links(*this, 0);
    ExprPtr left = not_expr();
    while (accept_name("and")) {
      links.deeper();
      auto e = make(Expr::Kind::And);
      e->a = left;
      e->b = not_expr();
      left = e;
    }
    return left;
  }
  ExprPtr not_expr() {
    if (accept_name("not")) {
      Nesting nesting(*this);
      auto e = make(Expr::Kind::Not);
      e->a = not_expr();
      return e;
    }
    return compare();
  }
  ExprPtr compare() {
    Nesting links(*this, 0);
    ExprPtr left = additive();
    for (;;) {
      std::string op;
      if (is_op("==") || is_op("!=") || is_op("<") || is_op(">") || is_op("<=") || is_op(">=")) {
        op = tokens_[pos_++].text;
      } else if (is_name("in")) {
        ++pos_;
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        return left;
      }
      links.deeper();
      auto e = make(Expr::Kind::Binary);
      e->name = op;
      e->a = left;
      e->b = additive();
      left = e;
    }
  }
  ExprPtr binary_chain(ExprPtr (ExprParser::*next)(), std::initializer_list<const char*> ops) {
    Nesting links(*this, 0);
    ExprPtr left = (this->*next)();
    for (;;) {
      const char* matched = nullptr;
      for (const char* op : ops) {
        if (is_op(op)) matched = op;
      }
      if (!matched) return left;
      links.deeper();
      ++pos_;
      auto e = make(Expr::Kind::Binary);
      e->name = matched;
      e->a = left;
      e->b = (this->*next)();
      left = e;
    }
  }
  ExprPtr additive() { return binary_chain(&ExprParser::concat, {"+", "-"}); }
  ExprPtr concat() { return binary_chain(&ExprParser::multiplicative, {"~"}); }
  ExprPtr multiplicative() { return binary_chain(&ExprParser::power, {"*", "/", "//", "%"}); }
  ExprPtr power() { return binary_chain(&ExprParser::unary, {"**"}); }
  ExprPtr unary() {
    if (accept_op("-")) {
      Nesting nesting(*this);
      auto e = make(Expr::Kind::Neg);
      e->a = unary();
      return e;
    }
    if (accept_op("+")) {
      Nesting nesting(*this);
      return unary();
    }
    return filters(postfix(primary()));
  }

  void call_arguments(std::vector<ExprPtr>& args, std::vector<std::pair<std::string, ExprPtr>>& kwargs) {
    // The "(" has been consumed.
    while (!accept_op(")")) {
      if (peek().type == Token::Type::Name && is_op("=", 1)) {
        const std::string key = expect_identifier();
        ++pos_;
        kwargs.emplace_back(key, expression());
      } else {
        args.push_back(expression());
      }
      if (!is_op(")")) expect_op(",");
    }
  }

  ExprPtr filters(ExprPtr value) {
    Nesting links(*this, 0);
    for (;;) {
      if (accept_op("|")) {
        links.deeper();
        auto e = make(Expr::Kind::Filter);
        e->name = expect_identifier();
        e->a = value;
        if (accept_op("(")) call_arguments(e->args, e->kwargs);
        value = postfix(e);
      } else if (accept_name("is")) {
        links.deeper();
        auto e = make(Expr::Kind::Test);
        e->negated = accept_name("not");
        e->name = peek().type == Token::Type::Name ? expect_identifier() : std::string();
        if (e->name.empty()) {
          // "is none" etc. are names; "is ==" style tests are not supported.
          error("expected a test name after 'is'");
        }
        e->a = value;
        if (accept_op("(")) {
          call_arguments(e->args, e->kwargs);
        } else if (peek().type == Token::Type::String || peek().type == Token::Type::Int ||
                   peek().type == Token::Type::Float) {
          e->args.push_back(primary());  // "is divisibleby 3", "is equalto 'x'"
        }
        value = e;
      } else {
        return value;
      }
    }
  }

  ExprPtr postfix(ExprPtr value) {
    Nesting links(*this, 0);
    for (;;) {
      if (is_op(".") || is_op("[") || is_op("(")) links.deeper();
      if (accept_op(".")) {
        auto e = make(Expr::Kind::Attr);
        e->a = value;
        if (peek().type == Token::Type::Int) {
          e->kind = Expr::Kind::Index;
          auto index = make(Expr::Kind::Literal);
          index->literal = Value(tokens_[pos_++].int_value);
          e->b = index;
        } else {
          e->name = expect_identifier();
        }
        value = e;
      } else if (accept_op("[")) {
        ExprPtr parts[3];
        bool present[3] = {false, false, false};
        bool is_slice = false;
        for (int part = 0; part < 3; ++part) {
          if (!is_op(":") && !is_op("]")) {
            parts[part] = expression();
            present[part] = true;
          }
          if (part < 2 && accept_op(":")) {
            is_slice = true;
            continue;
          }
          break;
        }
        expect_op("]");
        if (is_slice) {
          auto e = make(Expr::Kind::Slice);
          e->a = value;
          e->args = {parts[0], parts[1], parts[2]};
          for (int k = 0; k < 3; ++k) e->has[k] = present[k];
          value = e;
        } else {
          if (!present[0]) error("empty subscript");
          auto e = make(Expr::Kind::Index);
          e->a = value;
          e->b = parts[0];
          value = e;
        }
      } else if (accept_op("(")) {
        auto e = make(Expr::Kind::Call);
        e->a = value;
        call_arguments(e->args, e->kwargs);
        value = e;
      } else {
        return value;
      }
    }
  }

  ExprPtr primary() {
    const Token& token = peek();
    if (token.type == Token::Type::End) error("unexpected end of expression");
    ++pos_;
    auto literal = [](Value v) {
      auto e = make(Expr::Kind::Literal);
      e->literal = std::move(v);
      return e;
    };
    switch (token.type) {
      case Token::Type::String: {
        std::string text = token.text;
        while (peek().type == Token::Type::String) text += tokens_[pos_++].text;  // adjacent literals join
        return literal(Value(text));
      }
      case Token::Type::Int: return literal(Value(token.int_value));
      case Token::Type::Float: return literal(Value(token.float_value));
      case Token::Type::Name: {
        if (token.text == "true" || token.text == "True") return literal(Value(true));
        if (token.text == "false" || token.text == "False") return literal(Value(false));
        if (token.text == "none" || token.text == "None") return literal(Value::none());
        auto e = make(Expr::Kind::Name);
        e->name = token.text;
        return e;
      }
      case Token::Type::Op: {
        if (token.text == "(") {
          ExprPtr inner = expression();
          if (is_op(",")) error("tuples are not supported");
          expect_op(")");
          return inner;
        }
        if (token.text == "[") {
          auto e = make(Expr::Kind::List);
          while (!accept_op("]")) {
            e->args.push_back(expression());
            if (!is_op("]")) expect_op(",");
          }
          return e;
        }
        if (token.text == "{") {
          auto e = make(Expr::Kind::Dict);
          while (!accept_op("}")) {
            e->args.push_back(expression());
            expect_op(":");
            e->args.push_back(expression());
            if (!is_op("}")) expect_op(",");
          }
          return e;
        }
        error("unexpected '" + token.text + "'");
      }
      default: error("unexpected token");
    }
  }

  const std::vector<Token>& tokens_;
  const std::string& tag_;
  const std::string& name_;
  size_t pos_ = 0;
  int depth_ = 0;

  friend class StatementParser;
};

class StatementParser {
 public:
  StatementParser(const std::vector<Chunk>& chunks, const std::string& name) : chunks_(chunks), name_(name) {}

  // Parses until one of `stops` (a statement keyword) or the end; returns the keyword met ("" at end).
  std::string body(Body& out, std::initializer_list<const char*> stops) {
    if (++depth_ > kMaxNesting) fail(name_, ": statements nested deeper than ", kMaxNesting, " levels");
    struct Leave {
      int& depth;
      ~Leave() { --depth; }
    } leave{depth_};
    while (pos_ < chunks_.size()) {
      const Chunk& chunk = chunks_[pos_];
      if (chunk.type == Chunk::Type::Text) {
        auto node = std::make_shared<Node>();
        node->kind = Node::Kind::Text;
        node->text = chunk.text;
        out.push_back(node);
        ++pos_;
        continue;
      }
      ExprParser p(chunk, name_);
      if (chunk.type == Chunk::Type::Expression) {
        auto node = std::make_shared<Node>();
        node->kind = Node::Kind::Output;
        node->text = chunk.text;
        node->expr = p.expression();
        p.expect_end();
        out.push_back(node);
        ++pos_;
        continue;
      }
      const std::string keyword = p.peek().type == Token::Type::Name ? p.peek().text : "";
      for (const char* stop : stops) {
        if (keyword == stop) return keyword;
      }
      ++pos_;
      p.pos_ = 1;
      if (keyword == "if") {
        out.push_back(parse_if(p, chunk));
      } else if (keyword == "for") {
        out.push_back(parse_for(p, chunk));
      } else if (keyword == "set") {
        out.push_back(parse_set(p, chunk));
      } else if (keyword == "break" || keyword == "continue") {
        if (loops_ == 0) fail(name_, ": '", keyword, "' outside a for loop");
        p.expect_end();
        auto node = std::make_shared<Node>();
        node->kind = keyword == "break" ? Node::Kind::Break : Node::Kind::Continue;
        node->text = chunk.text;
        out.push_back(node);
      } else {
        fail(name_, ": unsupported statement '", excerpt(chunk.text), "'");
      }
    }
    return "";
  }

 private:
  // Consumes the closing tag chunk (e.g. endif) after body() stopped on it.
  ExprParser closing(const char* expected_any) {
    if (pos_ >= chunks_.size()) fail(name_, ": missing {% ", expected_any, " %}");
    ExprParser p(chunks_[pos_], name_);
    p.pos_ = 1;
    ++pos_;
    return p;
  }

  NodePtr parse_if(ExprParser& p, const Chunk& chunk) {
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::If;
    node->text = chunk.text;
    ExprPtr condition = p.expression();
    p.expect_end();
    for (;;) {
      Body branch;
      const std::string stop = body(branch, {"elif", "else", "endif"});
      node->branches.emplace_back(condition, std::move(branch));
      if (stop.empty()) fail(name_, ": missing {% endif %} for '", excerpt(chunk.text), "'");
      ExprParser q = closing("endif");
      if (stop == "elif") {
        condition = q.expression();
        q.expect_end();
        continue;
      }
      q.expect_end();
      if (stop == "else") {
        const std::string end = body(node->else_body, {"endif"});
        if (end.empty()) fail(name_, ": missing {% endif %} for '", excerpt(chunk.text), "'");
        closing("endif").expect_end();
      }
      return node;
    }
  }

  NodePtr parse_for(ExprParser& p, const Chunk& chunk) {
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::For;
    node->text = chunk.text;
    node->targets.push_back(p.expect_identifier());
    while (p.accept_op(",")) node->targets.push_back(p.expect_identifier());
    if (!p.accept_name("in")) p.error("expected 'in'");
    node->expr = p.or_expr();
    if (p.accept_name("if")) node->filter = p.or_expr();
    if (p.accept_name("recursive")) p.error("recursive loops are not supported");
    p.expect_end();
    ++loops_;
    const std::string stop = body(node->body, {"else", "endfor"});
    --loops_;
    if (stop.empty()) fail(name_, ": missing {% endfor %} for '", excerpt(chunk.text), "'");
    closing("endfor").expect_end();
    if (stop == "else") {
      if (body(node->else_body, {"endfor"}).empty()) fail(name_, ": missing {% endfor %} for '", excerpt(chunk.text), "'");
      closing("endfor").expect_end();
    }
    return node;
  }

  NodePtr parse_set(ExprParser& p, const Chunk& chunk) {
    auto node = std::make_shared<Node>();
    node->kind = Node::Kind::Set;
    node->text = chunk.text;
    std::string target = p.expect_identifier();
    if (p.accept_op(".")) target += "." + p.expect_identifier();
    if (p.is_op(",")) p.error("tuple assignment is not supported");
    node->targets.push_back(target);
    if (!p.accept_op("=")) p.error("block {% set %} ... {% endset %} is not supported");
    node->expr = p.expression();
    p.expect_end();
    return node;
  }

  const std::vector<Chunk>& chunks_;
  const std::string& name_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loops_ = 0;  // for-loop bodies around the statement being parsed (break/continue need one)
};

}  // namespace

Body parse(const std::vector<Chunk>& chunks, const std::string& name) {
  StatementParser parser(chunks, name);
  Body body;
  const std::string stray = parser.body(body, {"endif", "endfor", "elif", "else"});
  if (!stray.empty()) fail(name, ": unexpected {% ", stray, " %}");
  return body;
}

}  // namespace remora::jinja
