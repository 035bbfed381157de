// Fuzzes the Jinja chat-template engine: lexing, parsing and rendering with a conversation, tools and
// the variables transformers passes, within the render limits.
#include "core/error.h"
#include "tokenizer/jinja/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace remora::jinja;
  const std::string source(reinterpret_cast<const char*>(data), size);
  static const Value messages = Value::from_json(nlohmann::json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "What is 2+2?"},
      {"role": "assistant", "content": "4", "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2}}}]},
      {"role": "tool", "content": "{\"sum\": 4}"}])"));
  static const Value tools = Value::from_json(nlohmann::json::parse(
      R"([{"type": "function", "function": {"name": "add", "parameters": {"a": {"type": "integer"}}}}])"));
  try {
    const Template tmpl(source, "fuzz.jinja");
    tmpl.render({{"messages", messages}, {"tools", tools}, {"add_generation_prompt", Value(true)},
                 {"bos_token", Value("<s>")}, {"eos_token", Value("</s>")}});
  } catch (const remora::Error&) {
  }
  return 0;
}
