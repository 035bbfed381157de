#!/usr/bin/python3
"""kill -9 at random moments of a training run (checkpoint after every step, so many kills land inside
a checkpoint write): --resume (or, with no checkpoint yet, a fresh start) must end with an adapter
bit-identical to an uninterrupted run's (one thread), every time.

    kill_resume.py --remora build/src/remora --work /tmp/kill [--kills 50] [--seed 0]
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "data", "colors.jsonl")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    check = Checks()
    model = os.path.join(args.work, "model")
    subprocess.run([args.remora, "train-tokenizer", "--corpus", DATA, "--vocab-size", "300", "--out",
                    os.path.join(args.work, "tok")], check=True, capture_output=True)
    subprocess.run([args.remora, "init-model", "--preset", "toy", "--tokenizer", os.path.join(args.work, "tok"),
                    "--out", model], check=True, capture_output=True)

    def argv(out, *extra):
        return [args.remora, "--threads", "1", "train", os.path.join(ROOT, "configs", "remix.yaml"), f"model.path={model}",
                f"data.train={DATA}", f"output.dir={out}", "train.steps=8", "train.batch_size=4", "output.checkpoint_every=1",
                "output.keep_last=2", "log.every=1", "eval.every=0", "threads=1", "model.dtype=float32", *extra]

    def adapter(out):
        with open(os.path.join(out, "adapter", "adapter_model.safetensors"), "rb") as f:
            return f.read()

    reference = os.path.join(args.work, "reference")
    started = time.monotonic()
    subprocess.run(argv(reference), check=True, capture_output=True)
    duration = time.monotonic() - started
    expected = adapter(reference)

    rng = random.Random(args.seed)
    matched = resumed = 0
    out = os.path.join(args.work, "run")
    for kill in range(args.kills):
        shutil.rmtree(out, ignore_errors=True)
        delay = rng.uniform(0.25, 1.0) * duration  # mostly past start-up, where the checkpoints are written
        process = subprocess.Popen(argv(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # As a user would: --resume, and a fresh start only when remora says there is no checkpoint.
        result = subprocess.run(argv(out, "--resume"), capture_output=True, text=True)
        has_checkpoint = "no checkpoint to resume from" not in result.stderr
        if not has_checkpoint:
            result = subprocess.run(argv(out, "output.overwrite=true"), capture_output=True, text=True)
        resumed += has_checkpoint
        ok = result.returncode == 0 and adapter(out) == expected
        matched += ok
        if not ok:
            check(f"kill {kill} after {delay:.2f} s", False,
                  result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "adapter differs")
    check(f"{args.kills} kill -9 runs ({resumed} resumed from a checkpoint) end with the uninterrupted adapter",
          matched == args.kills and resumed > 0, f"{matched}/{args.kills} identical")
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
