#!/usr/bin/python3
"""The catalogue of hostile inputs: each case builds its input, runs one remora command, and expects a
one-line error matching a pattern, exit code 1, bounded time and memory, and every file it was given
intact with nothing new left behind. Each found bug gets a case named after its input here.

    hostile_inputs.py --remora build/src/remora --work /tmp/hostile [--only PATTERN]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "data", "colors.jsonl")
CASES = []


def case(name, error, *, timeout=60, max_rss_mib=1500, creates=()):
    """Registers `build(c) -> argv`; `error` is a regex the 'remora: error:' line must match;
    `creates` lists paths (relative to the case folder) the command may leave behind."""
    def register(build):
        CASES.append(dict(name=name, error=error, build=build, timeout=timeout, max_rss_mib=max_rss_mib,
                          creates=set(creates)))
        return build
    return register


class Case:
    """A fresh folder per case holding a copy of the fixtures (model/, adapter/, data.jsonl, recipe.yaml)."""

    def __init__(self, folder, fixtures):
        self.dir = folder
        self.env = {}  # environment variables the command runs with, beside the inherited ones
        shutil.copytree(fixtures, folder)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, relative, content):
        with open(self.path(relative), "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        return self.path(relative)

    def edit_json(self, relative, change):
        with open(self.path(relative)) as f:
            value = json.load(f)
        change(value)
        return self.write(relative, json.dumps(value))

    def train(self, *overrides, recipe="recipe.yaml"):
        return ["train", self.path(recipe), f"model.path={self.path('model')}", f"data.train={self.path('data.jsonl')}",
                f"output.dir={self.path('run')}", "train.steps=2", "log.every=1", *overrides]

    def chat_template(self, template):
        self.edit_json("model/tokenizer_config.json", lambda c: c.__setitem__("chat_template", template))
        return ["generate", "--model", self.path("model"), "--chat", "hi", "--max-new-tokens", "2"]


def nested(depth, inner="1"):
    return "[" * depth + inner + "]" * depth


# ---- Data loss: outputs that are, contain or lie inside an input --------------------------------------

@case("train_output_dir_is_model_folder_with_overwrite", r"output\.dir: .* is model\.path")
def _(c):
    return c.train(f"output.dir={c.path('model')}", "output.overwrite=true")


@case("train_output_dir_holds_the_training_data", r"output\.dir: .* contains data\.train")
def _(c):
    os.makedirs(c.path("datasets"))
    shutil.copy(c.path("data.jsonl"), c.path("datasets", "d.jsonl"))
    return c.train(f"data.train={c.path('datasets', 'd.jsonl')}", f"output.dir={c.path('datasets')}", "output.overwrite=true")


@case("train_output_dir_inside_model_folder", r"output\.dir: .* lies inside model\.path")
def _(c):
    return c.train(f"output.dir={c.path('model', 'run')}")


@case("train_output_dir_is_the_model_by_another_spelling", r"output\.dir: .* is model\.path")
def _(c):
    os.symlink(c.path("model"), c.path("alias"))
    return c.train(f"output.dir={c.path('alias', '..', 'model')}/", "output.overwrite=true")


@case("train_output_dir_contains_the_recipe", r"output\.dir: .* contains the recipe")
def _(c):
    os.makedirs(c.path("recipes"))
    shutil.copy(c.path("recipe.yaml"), c.path("recipes", "r.yaml"))
    return c.train(f"output.dir={c.path('recipes')}", "output.overwrite=true", recipe="recipes/r.yaml")


@case("train_existing_empty_output_dir_without_overwrite", r"run: already exists")
def _(c):
    os.makedirs(c.path("run"))
    return c.train()


@case("train_float16_on_cpu_leaves_no_output_folder", r"float16")
def _(c):
    return c.train("model.dtype=float16")


@case("train_failing_after_start_leaves_no_output_folder", r"data\.jsonl: no usable examples")
def _(c):
    c.write("data.jsonl", '{"text": ""}\n')
    return c.train()


@case("chat_line_of_50000_messages_then_a_bad_line", r"data\.jsonl:2: not valid JSON")
def _(c):
    # Rendering every prefix of the conversation took O(messages²) (hours here); training now stops
    # once the segments pass data.max_seq_len, so the run reaches line 2 at once.
    messages = [{"role": "assistant" if i % 2 else "user", "content": "hi"} for i in range(50000)]
    c.write("data.jsonl", json.dumps({"messages": messages}) + "\n{oops\n")
    return c.train()


@case("forward_out_dev_full", r"--out: /dev/full exists and is a device")
def _(c):
    return ["forward", "--model", c.path("model"), "--ids", "1,2", "--out", "/dev/full"]


@case("forward_out_fifo", r"--out: .*out\.fifo exists and is a FIFO")
def _(c):
    os.mkfifo(c.path("out.fifo"))
    return ["forward", "--model", c.path("model"), "--ids", "1,2", "--out", c.path("out.fifo")]


@case("forward_out_is_the_model_weights", r"--out: .* lies inside --model")
def _(c):
    return ["forward", "--model", c.path("model"), "--ids", "1,2", "--out", c.path("model", "model.safetensors")]


@case("merge_out_is_model_with_overwrite", r"--out: .* is --model")
def _(c):
    return ["merge", "--model", c.path("model"), "--adapter", c.path("adapter"), "--out", c.path("model"), "--overwrite"]


@case("merge_out_is_adapter_with_overwrite", r"--out: .* is --adapter")
def _(c):
    return ["merge", "--model", c.path("model"), "--adapter", c.path("adapter"), "--out", c.path("adapter"), "--overwrite"]


@case("init_adapter_out_is_model_with_overwrite", r"--out: .* is --model")
def _(c):
    return ["init-adapter", "--model", c.path("model"), "--out", c.path("model"), "--overwrite"]


@case("init_model_out_is_tokenizer_source", r"--out: .* is --tokenizer")
def _(c):
    return ["init-model", "--preset", "toy", "--tokenizer", c.path("model"), "--out", c.path("model"), "--overwrite"]


@case("eval_output_is_the_task_data", r"--output: .* is the data of task")
def _(c):
    return ["eval", "--model", c.path("model"), "--task", "loss", "--data", c.path("data.jsonl"),
            "--output", c.path("data.jsonl")]


@case("routing_html_is_the_data", r"--html: .* is --data")
def _(c):
    return ["routing", "--model", c.path("model"), "--adapter", c.path("adapter"), "--data", c.path("data.jsonl"),
            "--html", c.path("data.jsonl")]


@case("train_tokenizer_out_overwrites_its_corpus", r"--out: .*tokenizer\.json is --corpus")
def _(c):
    shutil.copy(c.path("data.jsonl"), c.path("tokenizer.json"))
    return ["train-tokenizer", "--corpus", c.path("tokenizer.json"), "--vocab-size", "300", "--out", c.dir, "--overwrite"]


# ---- Crashes: deep nesting ----------------------------------------------------------------------------

@case("config_json_eos_token_id_nested_300k", r"config\.json: JSON nested deeper than 256 levels")
def _(c):
    text = open(c.path("model", "config.json")).read().replace('"eos_token_id": 2', '"eos_token_id": ' + nested(300000))
    c.write("model/config.json", text)
    return ["forward", "--model", c.path("model"), "--ids", "1", "--out", c.path("o.safetensors")]


@case("config_json_rope_scaling_nested_300k", r"config\.json: JSON nested deeper")
def _(c):
    text = open(c.path("model", "config.json")).read()[:-1].rstrip().rstrip("}") + ', "rope_scaling": ' + \
        '{"a":' * 300000 + "1" + "}" * 300000 + "}"
    c.write("model/config.json", text)
    return ["inspect", c.path("model")]


@case("tokenizer_json_sequence_pre_tokenizer_nested_200k", r"tokenizer\.json: JSON nested deeper")
def _(c):
    text = open(c.path("model", "tokenizer.json")).read()
    deep = '{"type": "Sequence", "pretokenizers": [' * 200000 + '{"type": "Whitespace"}' + "]}" * 200000
    c.write("model/tokenizer.json", text.replace('"pre_tokenizer":', '"pre_tokenizer": ' + deep + ', "unused":', 1))
    return ["tokenize", "--model", c.path("model"), "--text", "hello"]


@case("chat_template_10k_nested_parentheses", r"chat.*nested deeper than 200 levels")
def _(c):
    return c.chat_template("{{ " + "(" * 10000 + "1" + ")" * 10000 + " }}")


@case("chat_template_10k_nested_ifs", r"statements nested deeper than 200 levels")
def _(c):
    return c.chat_template("{% if true %}" * 10000 + "x" + "{% endif %}" * 10000)


@case("chat_template_100k_nested_lists", r"nested deeper than 200 levels")
def _(c):
    return c.chat_template("{{ " + "[" * 100000 + "]" * 100000 + " }}")


@case("chat_template_200k_term_sum", r"nested deeper than 200 levels")
def _(c):
    return c.chat_template("{{ " + "+".join(["1"] * 200000) + " }}")


@case("chat_template_200k_nots", r"nested deeper than 200 levels")
def _(c):
    return c.chat_template("{{ " + "not " * 200000 + "1 }}")


@case("chat_template_200k_chained_filters", r"nested deeper than 200 levels")
def _(c):
    return c.chat_template("{{ 'a'" + "|upper" * 200000 + " }}")


@case("chat_template_list_that_contains_itself", r"nested deeper than 256 levels")
def _(c):
    return c.chat_template("{% set l = [] %}{{ l.append(l) }}{{ l }}")


@case("jsonl_output_nested_1m_train", r"data\.jsonl:1: JSON nested deeper")
def _(c):
    c.write("data.jsonl", '{"instruction": "x", "output": ' + nested(1000000) + "}\n")
    return c.train()


@case("jsonl_output_nested_1m_eval_loss", r"data\.jsonl:1: JSON nested deeper")
def _(c):
    c.write("data.jsonl", '{"instruction": "x", "output": ' + nested(1000000) + "}\n")
    return ["eval", "--model", c.path("model"), "--task", "loss", "--data", c.path("data.jsonl")]


@case("jsonl_output_nested_1m_eval_generate", r"data\.jsonl:1: JSON nested deeper")
def _(c):
    c.write("data.jsonl", '{"input": "x", "target": ' + nested(1000000) + "}\n")
    return ["eval", "--model", c.path("model"), "--task", "generate", "--data", c.path("data.jsonl")]


@case("adapter_config_target_modules_nested_1m", r"adapter_config\.json: JSON nested deeper")
def _(c):
    text = open(c.path("adapter", "adapter_config.json")).read()
    c.write("adapter/adapter_config.json", re.sub(r'"target_modules": *(\[[^\]]*\]|"[^"]*")',
                                                   '"target_modules": ' + nested(1000000, '"q_proj"'), text))
    return ["generate", "--model", c.path("model"), "--adapter", c.path("adapter"), "--ids", "1", "--max-new-tokens", "1"]


# ---- Aborts, hangs and runaway memory ------------------------------------------------------------------

BOMB = "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i-1}"] * 9) + "]\n" for i in range(1, 10))


@case("recipe_yaml_alias_bomb_in_train_steps", r"recipe\.yaml: YAML expands to more than")
def _(c):
    c.write("recipe.yaml", open(c.path("recipe.yaml")).read().replace("train:\n", "x:\n  l0: &l0 [lol]\n" +
            "".join("  " + line + "\n" for line in BOMB.splitlines()) + "train:\n  steps: *l9\n", 1))
    return ["train", c.path("recipe.yaml")]


@case("recipe_yaml_alias_bomb_at_top_level", r"recipe\.yaml: YAML expands to more than")
def _(c):
    c.write("recipe.yaml", "l0: &l0 [lol]\n" + BOMB + open(c.path("recipe.yaml")).read())
    return ["train", c.path("recipe.yaml")]


@case("chat_template_nested_range_100000_loops", r"more than 5000000 steps", timeout=60)
def _(c):
    return c.chat_template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")


@case("chat_template_string_doubled_in_namespace", r"longer than 16777216 bytes")
def _(c):
    return c.chat_template("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                           "{% endfor %}{{ ns.s }}")


@case("chat_template_range_10_to_the_9", r"range\(\) of .* longer than the limit")
def _(c):
    return c.chat_template("{% for i in range(10**9) %}{% endfor %}")


@case("chat_template_string_times_10_to_the_10", r"longer than 16777216 bytes")
def _(c):
    return c.chat_template("{{ 'a' * 10**10 }}")


@case("chat_template_integer_overflow", r"integer overflow")
def _(c):
    return c.chat_template("{{ 9223372036854775807 + 1 }}")


@case("threads_1000", r"--threads: 1000 is more than this machine's \d+ cores")
def _(c):
    return ["--threads", "1000", "tokenize", "--model", c.path("model"), "--text", "a"]


@case("recipe_threads_100000", r"threads: 100000 is more than this machine's \d+ cores")
def _(c):
    return c.train("threads=100000")


@case("data_train_is_dev_zero", r"/dev/zero: data file is a device")
def _(c):
    return c.train("data.train=/dev/zero")


@case("tokenize_file_dev_zero", r"/dev/zero: .*is a device")
def _(c):
    return ["tokenize", "--model", c.path("model"), "--file", "/dev/zero"]


@case("model_safetensors_is_a_fifo", r"model\.safetensors: safetensors file is a FIFO")
def _(c):
    os.remove(c.path("model", "model.safetensors"))
    os.mkfifo(c.path("model", "model.safetensors"))
    return ["forward", "--model", c.path("model"), "--ids", "1", "--out", c.path("o.safetensors")]


@case("safetensors_header_of_20mb_brackets", r"model\.safetensors: header: JSON nested deeper")
def _(c):
    header = b"[" * (20 << 20)
    c.write("model/model.safetensors", struct.pack("<Q", len(header)) + header)
    return ["inspect", c.path("model")]


@case("config_num_hidden_layers_100000", r"num_hidden_layers' is 100000, above remora's limit of 1024")
def _(c):
    c.edit_json("model/config.json", lambda j: j.__setitem__("num_hidden_layers", 100000))
    return ["forward", "--model", c.path("model"), "--ids", "1", "--out", c.path("o.safetensors")]


@case("config_num_hidden_layers_1000_without_weights", r"checkpoint has no tensor 'model\.layers\.2\.")
def _(c):
    c.edit_json("model/config.json", lambda j: j.__setitem__("num_hidden_layers", 1000))
    return ["forward", "--model", c.path("model"), "--ids", "1", "--out", c.path("o.safetensors")]


@case("inspect_head_dim_2_to_the_40", r"head_dim' is 1099511627776, above remora's limit")
def _(c):
    c.edit_json("model/config.json", lambda j: j.__setitem__("head_dim", 2 ** 40))
    return ["inspect", c.path("model")]


@case("tokenizer_json_vocab_id_1e8", r"tokenizer\.json: .*100000000.*")
def _(c):
    def change(t):
        t["model"]["vocab"]["zzz"] = 100000000
    c.edit_json("model/tokenizer.json", change)
    return ["tokenize", "--model", c.path("model"), "--text", "a"]


@case("tokenizer_json_vocab_id_2_to_the_31", r"2147483648")
def _(c):
    def change(t):
        t["model"]["vocab"]["zzz"] = 2 ** 31
    c.edit_json("model/tokenizer.json", change)
    return ["tokenize", "--model", c.path("model"), "--text", "a"]


@case("generate_30k_ids_past_the_context", r"prompt 0 has 30000 tokens; the model's context is 512")
def _(c):
    return ["generate", "--model", c.path("model"), "--ids", ",".join(["1"] * 30000), "--max-new-tokens", "1"]


@case("forward_ids_past_the_context", r"--ids: row 0 has 600 tokens; the model's context is 512")
def _(c):
    return ["forward", "--model", c.path("model"), "--ids", ",".join(["1"] * 600), "--out", c.path("o.safetensors")]


@case("generate_100kb_prompt_past_the_context", r"prompt 0 has \d+ tokens; the model's context is 512")
def _(c):
    return ["generate", "--model", c.path("model"), "--prompt", "red " * 25000, "--max-new-tokens", "1"]


@case("generate_max_new_tokens_2_to_the_63", r"--max-new-tokens: .* more than the model's context of 512")
def _(c):
    return ["generate", "--model", c.path("model"), "--ids", "1", "--max-new-tokens", str(2 ** 63 - 1)]


@case("train_samples_100000", r"train\.samples: .*100000.* at most 64")
def _(c):
    c.write("recipe.yaml", open(os.path.join(ROOT, "configs", "remix.yaml")).read())
    return c.train("train.samples=100000")


@case("recipe_num_experts_1000000", r"num_experts.*1000000")
def _(c):
    c.write("recipe.yaml", open(os.path.join(ROOT, "configs", "remix.yaml")).read())
    return c.train("adapter.num_experts=1000000")


# ---- Accepted silently before ----------------------------------------------------------------------------

@case("recipe_adapter_r_4_5", r"adapter: field 'r' must be an integer, got 4\.5")
def _(c):
    return c.train("adapter.r=4.5")


@case("recipe_optim_beta1_1_5", r"optim\.beta1.*1\.5")
def _(c):
    return c.train("optim.beta1=1.5")


@case("recipe_optim_beta2_negative", r"optim\.beta2.*-0\.1")
def _(c):
    return c.train("optim.beta2=-0.1")


@case("recipe_optim_eps_0", r"optim\.eps.*0")
def _(c):
    return c.train("optim.eps=0")


def poison_adapter(c, value):
    """Writes a copy of the adapter's weights with one element of the first lora_B set to `value`."""
    path = c.path("adapter", "adapter_model.safetensors")
    blob = bytearray(open(path, "rb").read())
    size = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + size])
    name = sorted(k for k in header if k.endswith("lora_B.weight"))[0]
    entry = header[name]
    assert entry["dtype"] == "F32"
    struct.pack_into("<f", blob, 8 + size + entry["data_offsets"][0], value)
    c.write("adapter/adapter_model.safetensors", bytes(blob))
    return name


@case("generate_with_nan_adapter_weights", r"adapter_model\.safetensors: tensor '.*lora_B\.weight' holds NaN")
def _(c):
    poison_adapter(c, float("nan"))
    return ["generate", "--model", c.path("model"), "--adapter", c.path("adapter"), "--ids", "1,2", "--max-new-tokens", "2"]


@case("merge_with_inf_adapter_weights", r"adapter_model\.safetensors: tensor '.*lora_B\.weight' holds .*inf")
def _(c):
    poison_adapter(c, float("inf"))
    return ["merge", "--model", c.path("model"), "--adapter", c.path("adapter"), "--out", c.path("merged")]


@case("config_eos_token_id_outside_vocabulary", r"config\.json: eos_token_id 5000 is outside the vocabulary")
def _(c):
    c.edit_json("model/config.json", lambda j: j.__setitem__("eos_token_id", 5000))
    return ["generate", "--model", c.path("model"), "--ids", "1", "--max-new-tokens", "1"]


@case("generate_seed_minus_1", r"--seed")
def _(c):
    return ["generate", "--model", c.path("model"), "--ids", "1", "--max-new-tokens", "1", "--temperature", "1", "--seed", "-1"]


@case("generate_seed_2_to_the_64", r"--seed")
def _(c):
    return ["generate", "--model", c.path("model"), "--ids", "1", "--max-new-tokens", "1", "--temperature", "1",
            "--seed", str(2 ** 64)]


@case("tokenize_file_is_a_folder", r"is a folder; expected a regular file")
def _(c):
    return ["tokenize", "--model", c.path("model"), "--file", c.path("model")]


@case("inspect_checkpoint_with_an_extra_tensor", r"checkpoint tensor 'extra\.weight' is not part of")
def _(c):
    path = c.path("model", "model.safetensors")
    blob = open(path, "rb").read()
    size = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + size])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header["extra.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    c.write("model/model.safetensors", struct.pack("<Q", len(text)) + text + blob[8 + size:] + b"\0" * 4)
    return ["inspect", c.path("model")]


@case("train_data_format_chat_forced_on_alpaca_lines", r"data\.jsonl:1: missing field 'messages'")
def _(c):
    return c.train("data.format=chat")  # found by fuzz_jsonl_records: read past the end of the record


@case("shard_index_names_a_shard_longer_than_a_file_name", r"index\.json: lists shard .* which does not exist")
def _(c):
    os.rename(c.path("model", "model.safetensors"), c.path("model", "a.safetensors"))
    c.write("model/model.safetensors.index.json", json.dumps({"weight_map": {"x": "b" * 5000}}))
    return ["inspect", c.path("model")]  # found by fuzz_shard_index: an uncaught filesystem_error


@case("chat_template_break_outside_a_loop", r"'break' outside a for loop")
def _(c):
    return c.chat_template("{% if true %}{% break %}{% endif %}")  # found by fuzz_chat_template: std::terminate


@case("recipe_target_modules_regex_with_a_huge_repeat_count", r"recipe\.yaml: adapter: target_modules.*regex")
def _(c):
    return c.train("adapter.target_modules=q{999999999999999999}")  # found by fuzz_recipe_yaml: UB in std::regex


@case("chat_template_tojson_of_invalid_utf8", r"prompt 0 has \d+ tokens; the model's context is 4")
def _(c):
    # found by fuzz_chat_template: tojson threw nlohmann's type_error; now it renders (U+FFFD) and the
    # command goes on to its next check, a context made too small on purpose
    c.edit_json("model/config.json", lambda j: j.__setitem__("max_position_embeddings", 4))
    c.write("model/chat_template.jinja", b"{{ '\xff\xfe'|tojson }}{{ messages|tojson }}")
    return ["generate", "--model", c.path("model"), "--chat", "hi", "--max-new-tokens", "1"]


@case("recipe_value_of_invalid_utf8", r"train\.batch_size: expected an integer")
def _(c):
    # found by fuzz_recipe_yaml: quoting the value in the error message threw nlohmann's type_error
    c.write("recipe.yaml", open(c.path("recipe.yaml"), "rb").read().replace(b"batch_size: 8", b"batch_size: \xff\xfe"))
    return c.train()


@case("chat_template_slicing_a_huge_string_in_a_loop", r"more than 5000000 steps", timeout=30)
def _(c):
    # found by fuzz_chat_template: within the step count, but minutes of work
    return c.chat_template("{% set s = 'a' * 16000000 %}{% for i in range(100000) %}{{ s[1:2] }}{% endfor %}")


# ---- Unclear errors before ----------------------------------------------------------------------------

@case("threads_0", r"^--threads: expected at least 1, got 0$")
def _(c):
    return ["--threads", "0", "tokenize", "--model", c.path("model"), "--text", "a"]


@case("unknown_verb", r"unknown verb 'frobnicate'")
def _(c):
    return ["frobnicate"]


@case("unknown_verb_then_help", r"unknown verb 'frobnicate'")
def _(c):
    return ["frobnicate", "--help"]


@case("recipe_adapter_method_is_a_number", r"adapter: field 'method' must be a string, got 5")
def _(c):
    return c.train("adapter.method=5")


@case("forward_dtype_float16", r"float16: LibTorch has no float16 matrix products on the CPU")
def _(c):
    return ["forward", "--model", c.path("model"), "--ids", "1", "--out", c.path("o.safetensors"), "--dtype", "float16"]


@case("config_json_number_1e400", r"config\.json: not valid JSON .*1e400")
def _(c):
    c.write("model/config.json", open(c.path("model", "config.json")).read().replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": 1e400'))
    return ["inspect", c.path("model")]


@case("tokenizer_regex_match_limit", r"tokenizer\.json: pre_tokenizer.*regex match failed")
def _(c):
    def change(t):
        t["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a|aa)+$"}, "behavior": "Isolated", "invert": False}
    c.edit_json("model/tokenizer.json", change)
    return ["tokenize", "--model", c.path("model"), "--text", "a" * 5000 + "b"]


@case("recipe_is_a_folder", r"recipe.* is a folder; expected a regular file")
def _(c):
    os.makedirs(c.path("recipe"))
    return ["train", c.path("recipe")]


@case("recipe_targets_matching_nothing_checked_before_data", r"target_modules .* matches no projection")
def _(c):
    return c.train("adapter.target_modules=[nothing_proj]", f"data.train={c.path('missing.jsonl')}")


@case("recipe_lm_head_target_checked_before_data", r"lm_head")
def _(c):
    return c.train("adapter.target_modules=[lm_head]", f"data.train={c.path('missing.jsonl')}")


@case("recipe_layer_num_experts_wrong_length_checked_before_data", r"layer_num_experts has 3 entries")
def _(c):
    c.write("recipe.yaml", open(os.path.join(ROOT, "configs", "remix.yaml")).read())
    return c.train("adapter.layer_num_experts=[2,2,2]", f"data.train={c.path('missing.jsonl')}")



# Found by the recipe_yaml fuzzer: <filesystem>'s exists() threw on a name longer than NAME_MAX.
@case("recipe_model_adapter_name_too_long", r"/a{300}/adapter_config\.json: cannot be looked up \(File name too long\)")
def _(c):
    return c.train(f"model.adapter={c.path('a' * 300)}")


@case("forward_model_name_too_long", r"/a{300}: cannot be looked up \(File name too long\)")
def _(c):
    return ["forward", "--model", c.path("a" * 300), "--ids", "1", "--out", c.path("out.json")]


# ---- serve: every bad start is a one-line error before anything listens ------------------------------

@case("serve_adapter_without_name", r"--adapter: expected NAME=DIR")
def _(c):
    return ["serve", "--model", c.path("model"), "--port", "0", "--adapter", c.path("adapter")]


@case("serve_adapter_name_given_twice", r"adapter name 'a' is given twice")
def _(c):
    return ["serve", "--model", c.path("model"), "--port", "0", "--adapter", f"a={c.path('adapter')}",
            "--adapter", f"a={c.path('adapter')}"]


@case("serve_unreachable_host", r"serve: cannot listen on 203\.0\.113\.7:0")
def _(c):
    return ["serve", "--model", c.path("model"), "--host", "203.0.113.7", "--port", "0"]

# ---- Runner ------------------------------------------------------------------------------------------

def snapshot(folder):
    """path -> (kind, size, content hash) of everything under folder."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            digest = ""
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha1(f.read()).hexdigest()
            state[os.path.relpath(path, folder)] = (stat.S_IFMT(info.st_mode), info.st_size, digest)
    return state


# ---- Several workers: torchrun's environment, the launcher, the distributed recipe keys -------------

@case("train_world_size_not_a_number", r"environment: WORLD_SIZE=two: expected an integer from 1")
def _(c):
    c.env = {"WORLD_SIZE": "two", "RANK": "0"}
    return c.train()


@case("train_rank_outside_the_world", r"environment: RANK=2: expected an integer from 0 to 1")
def _(c):
    c.env = {"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1"}
    return c.train()


@case("train_world_without_master_addr", r"environment: MASTER_ADDR is not set \(WORLD_SIZE=2 is\)")
def _(c):
    c.env = {"WORLD_SIZE": "2", "RANK": "0"}
    return c.train()


@case("train_master_port_out_of_range", r"environment: MASTER_PORT=70000: expected an integer from 1 to 65535")
def _(c):
    c.env = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"}
    return c.train()


@case("train_backend_nccl_without_nccl", r"train\.backend: nccl: this remora was built without NCCL")
def _(c):
    c.env = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29499"}
    return c.train("train.backend=nccl")


@case("train_backend_unknown", r"train\.backend: expected auto, gloo or nccl, got 'mpi'")
def _(c):
    return c.train("train.backend=mpi")


@case("train_dist_timeout_zero", r"train\.dist_timeout: must be >= 1, got 0")
def _(c):
    return c.train("train.dist_timeout=0")


@case("launch_of_another_verb", r"launch: expected the workers' command after --: remora launch")
def _(c):
    return ["launch", "--nproc-per-node", "2", "--", "eval", "--model", c.path("model")]


@case("launch_zero_workers", r"--nproc-per-node: expected 1 to \d+, got 0")
def _(c):
    return ["launch", "--nproc-per-node", "0", "--", *c.train()]


@case("launch_node_rank_past_nnodes", r"--node-rank: expected 0 to 1, got 2")
def _(c):
    return ["launch", "--nnodes", "2", "--node-rank", "2", "--", *c.train()]


def run_case(remora, spec, folder, fixtures):
    c = Case(folder, fixtures)
    argv = [remora, *spec["build"](c)]
    before = snapshot(folder)
    started = time.monotonic()
    returncode, stderr, rss_mib = run_measured(argv, spec["timeout"], {**os.environ, **c.env})
    if returncode is None:
        return f"still running after {spec['timeout']} s", ""
    seconds = time.monotonic() - started
    lines = stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    problems = []
    if returncode != 1:
        problems.append(f"exit {returncode}" if returncode >= 0 else f"killed by signal {-returncode}")
    if not last.startswith("remora: error: "):
        problems.append(f"last stderr line {last[:300]!r}")
    elif not re.search(spec["error"], last[len("remora: error: "):]):
        problems.append(f"error {last[:300]!r} does not match {spec['error']!r}")
    elif len(last) > 600:
        problems.append(f"error line of {len(last)} characters")
    if rss_mib > spec["max_rss_mib"]:
        problems.append(f"peak memory {rss_mib:.0f} MiB")
    after = snapshot(folder)
    changed = sorted(p for p in before if before[p] != after.get(p))
    added = sorted(p for p in after if p not in before and p.split(os.sep)[0] not in spec["creates"])
    if changed:
        problems.append(f"inputs changed or removed: {changed[:5]}")
    if added:
        problems.append(f"left behind: {added[:5]}")
    return "; ".join(problems) if problems else None, f"{seconds:.1f} s"


def run_measured(argv, timeout, env):
    """(exit code or -signal, stderr, peak resident MiB) of one command; exit code None on timeout."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(process.stderr.read()))
    reader.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            reader.join()
            return None, "", 0
        time.sleep(0.02)
    reader.join()
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace"), usage.ru_maxrss / 1024.0


def make_fixtures(remora, folder):
    os.makedirs(folder)
    subprocess.run([remora, "train-tokenizer", "--corpus", DATA, "--vocab-size", "300", "--out",
                    os.path.join(folder, "tok")], check=True, capture_output=True)
    subprocess.run([remora, "init-model", "--preset", "toy", "--tokenizer", os.path.join(folder, "tok"), "--out",
                    os.path.join(folder, "model")], check=True, capture_output=True)
    shutil.rmtree(os.path.join(folder, "tok"))
    subprocess.run([remora, "init-adapter", "--model", os.path.join(folder, "model"), "--method", "lora", "--r", "4",
                    "--out", os.path.join(folder, "adapter")], check=True, capture_output=True)
    shutil.copy(DATA, os.path.join(folder, "data.jsonl"))
    shutil.copy(os.path.join(ROOT, "configs", "lora.yaml"), os.path.join(folder, "recipe.yaml"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--only", default="", help="run the cases whose name matches this regex")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    fixtures = os.path.join(args.work, "fixtures")
    make_fixtures(args.remora, fixtures)
    check = Checks()
    for spec in CASES:
        if args.only and not re.search(args.only, spec["name"]):
            continue
        folder = os.path.join(args.work, spec["name"])
        problem, took = run_case(args.remora, spec, folder, fixtures)
        check(spec["name"], problem is None, problem or took)
        if problem is None:
            shutil.rmtree(folder, ignore_errors=True)
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
