#!/usr/bin/python3
"""remora's forward and generation against tests/reference/hf_reference.py, an independent PyTorch
re-implementation of the Hugging Face modelling code, on random checkpoints of every supported feature.

Pass: max |logit difference| < 1e-4 in fp32 for every row, left and right padding; cached, uncached and
reference greedy generation give identical tokens."""
import argparse
import json
import os
import random
import shutil
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import safetensors_py  # noqa: E402
sys.path.insert(0, HERE)
from checks import Checks, run  # noqa: E402

REFERENCE = os.path.join(HERE, "..", "reference", "hf_reference.py")
TOLERANCE = 1e-4

# name -> (arch, config overrides). Each variant switches on one decoder feature.
VARIANTS = {
    "llama_gqa_untied": ("llama", {}),
    "llama_mha": ("llama", {"num_key_value_heads": 4}),
    "llama3_rope_biases": ("llama", {
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "attention_bias": True, "mlp_bias": True}),
    "llama_linear_rope_legacy_key": ("llama", {"rope_scaling": {"type": "linear", "factor": 4.0}}),
    "llama_tied": ("llama", {"tie_word_embeddings": True}),
    "mistral_sliding_window": ("llama", {"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                                         "sliding_window": 5, "mlp_bias": False}),
    "qwen2_biases_tied": ("qwen2", {}),
    "qwen2_sliding_upper_layers": ("qwen2", {"use_sliding_window": True, "sliding_window": 4,
                                             "max_window_layers": 1}),
    "qwen3_qk_norm_head_dim": ("qwen3", {"eos_token_id": [2, 3]}),
}


def make_model(remora, work, name, arch, overrides, dtype="float32", std=0.02):
    out = os.path.join(work, name)
    cmd = [remora, "init-model", "--arch", arch, "--preset", "toy", "--out", out, "--dtype", dtype,
           "--seed", str(zlib.crc32(name.encode()) % 1000), "--overwrite", "--set", f"initializer_range={std}"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    run(cmd)
    return out


def random_rows(seed, vocab=512):
    rng = random.Random(seed)
    lengths = [23, 7, 1, 16]  # longer than every sliding window and the llama3 original context
    return ";".join(",".join(str(rng.randrange(vocab)) for _ in range(n)) for n in lengths)


def max_logit_difference(remora, work, model, ids, dtype="float32", padding="right"):
    ours, theirs = os.path.join(work, "ours.safetensors"), os.path.join(work, "theirs.safetensors")
    run([remora, "--threads", "1", "forward", "--model", model, "--ids", ids, "--out", ours,
         "--dtype", dtype, "--padding", padding])
    run([sys.executable, REFERENCE, "forward", "--model", model, "--ids", ids, "--out", theirs])
    a, b = safetensors_py.load(ours), safetensors_py.load(theirs)
    if sorted(a) != sorted(b):
        raise AssertionError(f"tensor names differ: {sorted(a)} vs {sorted(b)}")
    worst = 0.0
    for key in b:
        if a[key].shape != b[key].shape:
            raise AssertionError(f"{key}: shape {tuple(a[key].shape)} vs {tuple(b[key].shape)}")
        worst = max(worst, (a[key].float() - b[key].float()).abs().max().item())
    return worst


def shard(model_dir, out_dir):
    """Splits model.safetensors into two shards with an index, the layout of large HF checkpoints."""
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(model_dir, out_dir)
    tensors = safetensors_py.load(os.path.join(out_dir, "model.safetensors"))
    os.remove(os.path.join(out_dir, "model.safetensors"))
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for filename, part in halves.items():
        safetensors_py.save({n: tensors[n] for n in part}, os.path.join(out_dir, filename))
        weight_map.update({n: filename for n in part})
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    return out_dir


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    check = Checks()

    for index, (name, (arch, overrides)) in enumerate(VARIANTS.items()):
        model = make_model(args.remora, args.work, name, arch, overrides)
        ids = random_rows(index)
        for padding in ("right", "left"):
            diff = max_logit_difference(args.remora, args.work, model, ids, padding=padding)
            check(f"{name} forward fp32 ({padding} padding)", diff < TOLERANCE, f"max |dlogit| {diff:.2e}")

    sharded = shard(os.path.join(args.work, "qwen3_qk_norm_head_dim"), os.path.join(args.work, "sharded"))
    diff = max_logit_difference(args.remora, args.work, sharded, random_rows(99))
    check("sharded checkpoint forward fp32", diff < TOLERANCE, f"max |dlogit| {diff:.2e}")

    # A bf16 checkpoint read into fp32 holds the same values the reference upcasts.
    bf16 = make_model(args.remora, args.work, "llama_bf16_storage", "llama", {}, dtype="bfloat16")
    diff = max_logit_difference(args.remora, args.work, bf16, random_rows(7))
    check("bf16 checkpoint loaded as fp32", diff < TOLERANCE, f"max |dlogit| {diff:.2e}")
    # Computing in bf16 rounds every activation to 8 bits of mantissa; logits of this model are
    # O(1), so a bound of 0.1 catches a broken bf16 path without flagging ordinary rounding.
    diff = max_logit_difference(args.remora, args.work, bf16, random_rows(7), dtype="bfloat16")
    check("bf16 compute close to fp32 reference", diff < 0.1, f"max |dlogit| {diff:.2e}")

    # Greedy generation: peaked logits (larger init) so that rounding cannot flip a near tie.
    for arch in ("llama", "qwen3"):
        model = make_model(args.remora, args.work, f"{arch}_generate", arch, {}, std=0.3)
        prompts = "5,6,7,8,9;300,2,17;42"
        base = [args.remora, "--threads", "1", "generate", "--model", model, "--ids", prompts,
                "--max-new-tokens", "12", "--dtype", "float32"]
        cached = run(base)
        uncached = run(base + ["--no-cache"])
        reference = run([sys.executable, REFERENCE, "generate", "--model", model, "--ids", prompts,
                         "--max-new-tokens", "12"])
        check(f"{arch} cached generation == uncached", cached == uncached, cached.strip().replace("\n", " | "))
        check(f"{arch} cached generation == reference", cached == reference,
              reference.strip().replace("\n", " | "))
        singles = "".join(run([args.remora, "--threads", "1", "generate", "--model", model, "--ids", p,
                               "--max-new-tokens", "12", "--dtype", "float32"])
                          for p in prompts.split(";"))
        check(f"{arch} batched generation == one prompt at a time", singles == cached, "")

    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
