// Renders the chat templates of Llama 3, Llama 3.1, Qwen2.5, Qwen3, Mistral and ChatML and compares
// with Jinja2's output (tests/tokenizer_golden/chat_golden.json); Jinja-subset edge cases.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "tokenizer/jinja/template.h"

namespace remora::jinja {
namespace {

std::string render(const std::string& source, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object()) {
  Object variables;
  for (const auto& [k, v] : vars.items()) variables.emplace_back(k, Value::from_json(v));
  return Template(source, "test").render(variables);
}

TEST(ChatTemplate, MatchesJinja2OnEveryGoldenCase) {
  const std::string dir = std::string(REMORA_TOKENIZER_GOLDEN);
  const auto golden = nlohmann::ordered_json::parse(read_text_file(dir + "/chat_golden.json"));
  size_t rendered = 0, errors = 0;
  for (const auto& c : golden.at("cases")) {
    const std::string name = c.at("template");
    SCOPED_TRACE(name + " / " + c.at("conversation").get<std::string>() +
                 (c.at("add_generation_prompt").get<bool>() ? " + generation prompt" : ""));
    const Template compiled(read_text_file(dir + "/chat_templates/" + name + ".jinja"), name);
    Object variables{{"messages", Value::from_json(c.at("messages"))},
                     {"add_generation_prompt", Value(c.at("add_generation_prompt").get<bool>())},
                     {"bos_token", Value(c.at("bos_token").get<std::string>())},
                     {"eos_token", Value(c.at("eos_token").get<std::string>())}};
    for (const auto& [k, v] : c.at("extra").items()) variables.emplace_back(k, Value::from_json(v));
    if (c.contains("error")) {
      try {
        compiled.render(variables);
        ADD_FAILURE() << "expected the template to raise: " << c.at("error");
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(c.at("error").get<std::string>()), std::string::npos) << e.what();
        ++errors;
      }
      continue;
    }
    EXPECT_EQ(compiled.render(variables), c.at("expected").get<std::string>());
    ++rendered;
  }
  EXPECT_EQ(rendered, 54u);
  EXPECT_EQ(errors, 2u);
}

TEST(Jinja, WhitespaceControlAndBlockTrimming) {
  EXPECT_EQ(render("  {% if true %}\n  a\n  {%- endif %}\n{# c #}\nb"), "  ab");
  EXPECT_EQ(render("{{- ' x ' -}}  \n  y"), " x y");
}

TEST(Jinja, LoopScopeDoesNotLeakButNamespaceDoes) {
  EXPECT_EQ(render("{% set x = 0 %}{% for i in [1,2,3] %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}"), "123|0");
  EXPECT_EQ(render("{% set ns = namespace(t=0) %}{% for i in [1,2,3] %}{% set ns.t = ns.t + i %}{% endfor %}{{ ns.t }}"),
            "6");
}

TEST(Jinja, LoopVariablesSlicesAndFilters) {
  EXPECT_EQ(render("{% for m in xs[1:] %}{{ loop.index0 }}{{ m }}{{ '.' if loop.last }}{% endfor %}",
                   {{"xs", {"a", "b", "c"}}}),
            "0b1c.");
  EXPECT_EQ(render("{{ xs[::-1] | join(',') }} {{ xs | length }} {{ xs[-1] }}", {{"xs", {1, 2, 3}}}), "3,2,1 3 3");
  EXPECT_EQ(render("{{ ' a ' | trim }}|{{ 'a</think>b'.split('</think>')[-1] }}|{{ 'x' in 'xyz' }}"), "a|b|True");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [true, none, 1.5, 'é']} | tojson }}"), "{\"b\": 1, \"a\": [true, null, 1.5, \"é\"]}");
  EXPECT_EQ(render("{{ undefined_name is defined }}{{ none is none }}{{ 7 // 2 }}{{ 7 % 3 }}{{ 'ab' ~ 3 }}"),
            "FalseTrue31ab3");
}

TEST(Jinja, StringsSliceByCharactersAsPythonDoes) {
  // Expected strings from Python 3: s = 'héllo wörld ✓'; '|'.join([s[1:], s[::-1], ...]).
  EXPECT_EQ(render("{{ s[1:] }}|{{ s[::-1] }}|{{ s[-3:] }}|{{ s[::2] }}|{{ s[10:2:-3] }}|{{ s[5:5] }}|{{ s[-100:3] }}|"
                   "{{ s[2:100] }}",
                   {{"s", "h\u00e9llo w\u00f6rld \u2713"}}),
            "\u00e9llo w\u00f6rld \u2713|\u2713 dlr\u00f6w oll\u00e9h|d \u2713|hlowrd\u2713|d\u00f6o||h\u00e9l|llo w\u00f6rld \u2713");
}

// Found by the chat_template fuzzer: a float step of 1e20 was cast to an integer (undefined behaviour),
// and a step near 2^63 overflowed the index. Expected strings from Python 3 (s = 'abc').
TEST(Jinja, SliceBoundsAreIntegersEvenHugeOnes) {
  const nlohmann::ordered_json s = {{"s", "abc"}};
  EXPECT_EQ(render("{{ s[1::9223372036854775807] }}|{{ s[::-9223372036854775807] }}|{{ s[-9223372036854775807:] }}|"
                   "{{ s[True:] }}|{{ [1, 2, 3][1::9223372036854775807] | join(',') }}",
                   s),
            "b|c|abc|bc|2");
  for (const std::string source : {"{{ s[::99999999999999999999.0] }}", "{{ s[0.5:] }}", "{{ s[:'a'] }}"}) {
    try {
      render(source, s);
      ADD_FAILURE() << source << " rendered";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("slice indices must be integers"), std::string::npos) << e.what();
    }
  }
}

TEST(Jinja, UnsupportedConstructsAreErrorsQuotingThem) {
  auto message = [](const std::string& source) {
    try {
      render(source);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{% macro f() %}x{% endmacro %}").find("{% macro f() %}"), std::string::npos);
  EXPECT_NE(message("{{ x | wordcount }}").find("wordcount"), std::string::npos);
  EXPECT_NE(message("{% if x %}never closed").find("endif"), std::string::npos);
  EXPECT_NE(message("{{ raise_exception('boom') }}").find("boom"), std::string::npos);
}

}  // namespace
}  // namespace remora::jinja
