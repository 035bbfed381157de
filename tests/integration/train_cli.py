#!/usr/bin/python3
"""`remora train` end to end on a toy model: the loss goes down for every shipped recipe, ReMix runs are
reproducible, kill -9 then --resume ends with the same adapter as an uninterrupted run, SIGTERM saves a
checkpoint, and bad input (data line, model folder, recipe key, output folder) gets its one-line error."""
import argparse
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "data", "colors.jsonl")
METHODS = ["lora", "rslora", "molora", "topk", "hydra", "remix", "smora", "multilora", "malora", "full"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    work = args.work
    os.makedirs(work, exist_ok=True)
    check = Checks()

    def remora(*argv, threads=2, **kwargs):
        return subprocess.run([args.remora, "--threads", str(threads), *argv], capture_output=True, text=True, **kwargs)

    def train(method, out, *overrides, threads=2):
        return remora("train", os.path.join(ROOT, "configs", f"{method}.yaml"), f"model.path={model}",
                      f"data.train={DATA}", f"output.dir={out}", "output.overwrite=true", "eval.every=0",
                      "log.every=1", f"threads={threads}", *overrides, threads=threads)

    def losses(out):
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return [r["loss"] for r in map(json.loads, f) if "loss" in r]

    tokenizer, model = os.path.join(work, "tokenizer"), os.path.join(work, "model")
    assert remora("train-tokenizer", "--corpus", DATA, "--vocab-size", "400", "--out", tokenizer, "--overwrite").returncode == 0
    assert remora("init-model", "--preset", "toy", "--tokenizer", tokenizer, "--out", model, "--overwrite").returncode == 0

    for method in METHODS:
        out = os.path.join(work, method)
        result = train(method, out, "train.steps=30", "output.checkpoint_every=0", "schedule.warmup_steps=3")
        if result.returncode != 0:
            check(f"{method}: trains", False, result.stderr.strip().splitlines()[-1])
            continue
        curve = losses(out)
        first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
        check(f"{method}: loss goes down", last < first - 0.2, f"{first:.3f} -> {last:.3f}")
        produced = os.path.join(out, "model" if method == "full" else "adapter")
        check(f"{method}: writes {os.path.basename(produced)}/", os.path.isdir(produced))

    # ReMix logs what RLOO does: adapter and router gradient norms (per router too) and mean log Q.
    with open(os.path.join(work, "remix", "metrics.jsonl")) as f:
        records = [r for r in map(json.loads, f) if "loss" in r]
    logged = all({"adapter_grad_norm", "router_grad_norm", "mean_log_q", "advantage_spread"} <= r.keys()
                 for r in records)
    per_router = all("router_grad_norm" in site for r in records for site in r.get("routing", []))
    check("remix metrics: gradient norms per group and per router, mean log Q", logged and per_router and
          any("routing" in r for r in records), json.dumps(records[-1])[:300] if records else "no records")

    # Sequence routing decides from the prompt in training and evaluation alike: the trainer's final
    # validation loss is what `remora eval --task loss` gives on the same file (fp32, so batching
    # cannot change the rounding).
    validation = os.path.join(work, "validation.jsonl")
    with open(DATA) as f, open(validation, "w") as v:
        v.writelines(f.readlines()[:20])
    sequence = os.path.join(work, "remix_sequence")
    run = train("remix", sequence, "train.steps=8", "output.checkpoint_every=0", "adapter.routing=sequence",
                "model.dtype=float32", f"data.validation={validation}", "train.batch_size=3")
    with open(os.path.join(sequence, "metrics.jsonl")) as f:
        trained = [r["validation_loss"] for r in map(json.loads, f) if "validation_loss" in r][-1]
    scored = remora("eval", "--model", model, "--adapter", os.path.join(sequence, "adapter"), "--dtype", "float32",
                    "--task", "loss", "--data", validation, "--batch-size", "5",
                    "--output", os.path.join(work, "validation_eval.json"))
    evaluated = None
    if scored.returncode == 0:
        with open(os.path.join(work, "validation_eval.json")) as f:
            evaluated = json.load(f)["results"]["validation"]["loss,none"]
    check("sequence routing: trainer validation loss = eval --task loss", run.returncode == 0 and evaluated is not None
          and abs(trained - evaluated) <= 1e-5 * abs(trained), f"train {trained}, eval {evaluated} {scored.stderr[-200:]}")

    # Same seed, one thread: the same ReMix run twice gives the same numbers and the same adapter.
    a, b = os.path.join(work, "remix_a"), os.path.join(work, "remix_b")
    for out in (a, b):
        train("remix", out, "train.steps=12", "output.checkpoint_every=0", threads=1)
    same = losses(a) == losses(b) and filecmp.cmp(os.path.join(a, "adapter", "adapter_model.safetensors"),
                                                  os.path.join(b, "adapter", "adapter_model.safetensors"), shallow=False)
    check("remix M=4: same seed, same run", same)

    # kill -9 after the step-10 checkpoint, then --resume: same adapter as an uninterrupted run.
    steps = ["train.steps=120", "output.checkpoint_every=5", "output.keep_last=3"]
    whole, killed = os.path.join(work, "whole"), os.path.join(work, "killed")
    train("remix", whole, *steps, threads=1)
    argv = [args.remora, "--threads", "1", "train", os.path.join(ROOT, "configs", "remix.yaml"), f"model.path={model}",
            f"data.train={DATA}", f"output.dir={killed}", "output.overwrite=true", "eval.every=0", "log.every=1",
            "threads=1", *steps]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = os.path.join(killed, "checkpoints", "step-00000010", "progress.json")
    deadline = time.time() + 120
    while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    was_running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(argv + ["--resume"], capture_output=True, text=True)
    same = resumed.returncode == 0 and filecmp.cmp(os.path.join(whole, "adapter", "adapter_model.safetensors"),
                                                   os.path.join(killed, "adapter", "adapter_model.safetensors"),
                                                   shallow=False) and losses(whole) == losses(killed)
    check("kill -9 mid-run, --resume: same adapter and loss curve", was_running and same,
          f"killed while running: {was_running}; {resumed.stderr.strip().splitlines()[0] if resumed.stderr else ''}")

    # SIGTERM: a checkpoint is saved and the exit status says it was stopped.
    stopped = os.path.join(work, "stopped")
    shutil.rmtree(stopped, ignore_errors=True)  # so that a metrics file can only come from this run
    argv_stop = [a if not a.startswith("output.dir=") else f"output.dir={stopped}" for a in argv]
    argv_stop = [a if a != "output.checkpoint_every=5" else "output.checkpoint_every=0" for a in argv_stop]
    process = subprocess.Popen(argv_stop, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(stopped, "metrics.jsonl")
    while (not os.path.exists(metrics) or os.path.getsize(metrics) == 0) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate()
    saved = os.path.isdir(os.path.join(stopped, "checkpoints"))
    check("SIGTERM saves a checkpoint and exits 130", process.returncode == 130 and saved,
          f"exit {process.returncode}, {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")

    # Bad input: each a one-line error naming what is wrong.
    bad_data = os.path.join(work, "bad.jsonl")
    with open(bad_data, "w") as f:
        f.write('{"text": "fine"}\n{"text": "broken"\n')
    cases = [
        ("malformed data line", train("lora", os.path.join(work, "e1"), f"data.train={bad_data}"), "bad.jsonl:2"),
        ("missing model folder", train("lora", os.path.join(work, "e2"), "model.path=/no/such/model"), "/no/such/model"),
        ("recipe typo", train("lora", os.path.join(work, "e3"), "optim.lrate=1"), "unknown key 'optim.lrate'"),
        ("key with no effect", train("remix", os.path.join(work, "e6"), "adapter.lora_alpha=16"),
         "lora_alpha has no effect with method remix"),
        ("existing output folder", remora("train", os.path.join(ROOT, "configs", "lora.yaml"), f"model.path={model}",
                                          f"data.train={DATA}", f"output.dir={whole}"), "already exists"),
    ]
    for label, result, expected in cases:
        lines = result.stderr.strip().splitlines()
        check(f"error: {label}", result.returncode != 0 and len(lines) == 1 and expected in lines[0],
              lines[-1] if lines else "no message")
    skipped = train("lora", os.path.join(work, "e4"), f"data.train={bad_data}", "data.skip_bad_lines=true",
                    "train.steps=2", "data.validation_fraction=0")
    check("skip_bad_lines: a counted warning", skipped.returncode == 0 and "1 bad lines skipped" in skipped.stderr)
    long_run = train("lora", os.path.join(work, "e5"), "data.max_seq_len=8", "data.train_on_prompt=true",
                     "train.steps=2")
    check("too-long sequences: truncated and counted",
          long_run.returncode == 0 and " truncated to 8 tokens" in long_run.stderr and " 0 truncated" not in long_run.stderr,
          [l for l in long_run.stderr.splitlines() if l.startswith("data:")][0] if long_run.returncode == 0 else long_run.stderr)

    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
