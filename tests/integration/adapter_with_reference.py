#!/usr/bin/python3
"""A PEFT-layout LoRA adapter applied by remora (`forward --adapter`, and `merge`) against the reference:
the adapter's update folded into the base weights here, in PyTorch, straight from PEFT's documented
naming and scaling (W += lora_alpha / r (or / sqrt(r) with use_rslora) * B @ A; with use_dora,
W' = m * (W + s B A) / ||W + s B A|| row by row, PEFT's lora_magnitude_vector m), then run through
tests/reference/hf_reference.py. Pass: max |dlogit| < 1e-4 in fp32."""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import safetensors_py  # noqa: E402
sys.path.insert(0, HERE)
from checks import Checks, run  # noqa: E402

REFERENCE = os.path.join(HERE, "..", "reference", "hf_reference.py")
PREFIX = "base_model.model."
IDS = "3,17,99,250,7,1,42,300;5,6,7"


def fold_peft_lora(model_dir, adapter_dir, out_dir):
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(model_dir, out_dir)
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    assert config["peft_type"] == "LORA", config["peft_type"]
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = safetensors_py.load(os.path.join(out_dir, "model.safetensors"))
    adapter = safetensors_py.load(os.path.join(adapter_dir, "adapter_model.safetensors"))
    folded = 0
    for name, a in adapter.items():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name[len(PREFIX):-len(".lora_A.weight")]
        b = adapter[name.replace(".lora_A.", ".lora_B.")]
        updated = weights[module + ".weight"].float() + scale * (b.float() @ a.float())
        if config.get("use_dora"):
            magnitude = adapter[PREFIX + module + ".lora_magnitude_vector"].float()
            updated = (magnitude / updated.norm(p=2, dim=1)).unsqueeze(1) * updated
        weights[module + ".weight"] = updated
        folded += 1
    safetensors_py.save({k: v.float() for k, v in weights.items()}, os.path.join(out_dir, "model.safetensors"))
    return folded


def max_difference(a_path, b_path):
    a, b = safetensors_py.load(a_path), safetensors_py.load(b_path)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in b)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    check = Checks()

    for arch, method, dora in (("llama", "lora", False), ("qwen2", "rslora", False), ("llama", "lora", True),
                               ("qwen2", "rslora", True)):
        model = os.path.join(args.work, f"{arch}_base")
        run([args.remora, "init-model", "--arch", arch, "--out", model, "--dtype", "float32", "--overwrite", "--seed", "3"])
        method_label = method + ("+dora" if dora else "")
        adapter = os.path.join(args.work, f"{arch}_{method_label}")
        run([args.remora, "init-adapter", "--model", model, "--out", adapter, "--method", method, "--r", "4",
             "--alpha", "8", "--target", "all-linear", "--init-b-std", "0.05", "--overwrite", "--seed", "5"]
            + (["--set", "use_dora=true"] if dora else []))
        if dora:
            # init-adapter starts m at ||W||; move it so the magnitude enters the comparison.
            path = os.path.join(adapter, "adapter_model.safetensors")
            tensors = safetensors_py.load(path)
            generator = torch.Generator().manual_seed(7)
            for key in [k for k in tensors if k.endswith(".lora_magnitude_vector")]:
                tensors[key] = tensors[key] * (0.5 + torch.rand(tensors[key].shape, generator=generator))
            safetensors_py.save(tensors, path)
        method = method_label
        folded_dir = os.path.join(args.work, f"{arch}_{method}_folded")
        folded = fold_peft_lora(model, adapter, folded_dir)
        reference = os.path.join(args.work, "reference.safetensors")
        run([sys.executable, REFERENCE, "forward", "--model", folded_dir, "--ids", IDS, "--out", reference])
        ours = os.path.join(args.work, "ours.safetensors")
        run([args.remora, "--threads", "1", "forward", "--model", model, "--adapter", adapter, "--ids", IDS,
             "--out", ours, "--dtype", "float32", "--padding", "left"])
        diff = max_difference(ours, reference)
        check(f"{arch} {method} forward --adapter ({folded} modules)", diff < 1e-4, f"max |dlogit| {diff:.2e}")
        merged = os.path.join(args.work, f"{arch}_{method}_merged")
        run([args.remora, "merge", "--model", model, "--adapter", adapter, "--out", merged, "--overwrite"])
        run([args.remora, "--threads", "1", "forward", "--model", merged, "--ids", IDS, "--out", ours,
             "--dtype", "float32"])
        diff = max_difference(ours, reference)
        check(f"{arch} {method} merge then forward", diff < 1e-4, f"max |dlogit| {diff:.2e}")

    # A routed adapter cannot be merged: the command fails with the reason and writes nothing.
    routed = os.path.join(args.work, "remix")
    run([args.remora, "init-adapter", "--model", os.path.join(args.work, "llama_base"), "--out", routed,
         "--method", "remix", "--target", "gate_proj,up_proj,down_proj", "--overwrite"])
    refused_out = os.path.join(args.work, "remix_merged")
    result = subprocess.run([args.remora, "merge", "--model", os.path.join(args.work, "llama_base"),
                             "--adapter", routed, "--out", refused_out], capture_output=True, text=True)
    check("merge refuses a ReMix adapter", result.returncode != 0 and "cannot be folded" in result.stderr
          and not os.path.exists(refused_out), result.stderr.strip())

    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
