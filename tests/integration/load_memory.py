#!/usr/bin/python3
"""Loading a ~1 GB bf16 checkpoint must not need much more resident memory than the weights themselves:
the peak RSS of `remora forward` on it, less the peak RSS of the same command on a toy model (LibTorch's
own code, about 160 MiB, which does not grow with the checkpoint), is at most 1.1 x the file size."""
import argparse
import os
import shutil
import subprocess
import sys

LIMIT = 1.1


def peak_rss_of_forward(remora, model, work):
    """Peak resident bytes of one `remora forward` process."""
    out = os.path.join(work, "logits.safetensors")
    child = subprocess.Popen([remora, "forward", "--model", model, "--ids", "1,2,3", "--out", out])
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise RuntimeError(f"remora forward on {model} exited with status {status}")
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    model = os.path.join(args.work, "model_1gb")
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        shape = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 8,
                 "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 32000}
        cmd = [args.remora, "init-model", "--arch", "llama", "--preset", "base", "--out", model,
               "--overwrite", "--dtype", "bfloat16"]
        for key, value in shape.items():
            cmd += ["--set", f"{key}={value}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    size = os.path.getsize(os.path.join(model, "model.safetensors"))

    toy = os.path.join(args.work, "toy")
    subprocess.run([args.remora, "init-model", "--out", toy, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    baseline, peak = peak_rss_of_forward(args.remora, toy, args.work), peak_rss_of_forward(args.remora, model, args.work)
    ratio = (peak - baseline) / size
    ok = ratio <= LIMIT
    print(f"{'PASS' if ok else 'FAIL'} checkpoint {size / 2**20:.0f} MiB, peak RSS {peak / 2**20:.0f} MiB, "
          f"toy-model baseline {baseline / 2**20:.0f} MiB, (peak - baseline) / size = {ratio:.3f} (limit {LIMIT})")
    print(f"{int(ok)} passed, {int(not ok)} failed")
    shutil.rmtree(args.work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
