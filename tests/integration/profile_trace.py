#!/usr/bin/python3
"""`remora bench --recipe` with REMORA_PROFILE, and bench/profile_ops.py on what it writes: a hand-made trace
whose sums are known (steady-state window, self time, a stall left out of its callers, rows per shape), then the trace of
a toy ReMix run (four timed steps: three steps from the 4th backward of the loss to the last, the GEMMs and
the loss found)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, remora_and_fresh_work, run  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(ROOT, "bench", "profile_ops.py")
LOSS_BACKWARD = "autograd::engine::evaluate_function: torch::autograd::CppNode<remora::TokenCrossEntropy>"  # as LibTorch names it, less the namespace


def event(name, ts, dur, dims=None):
    args = {"Input Dims": dims} if dims else {}
    return {"name": name, "ph": "X", "ts": ts, "dur": dur, "tid": 1, "pid": "CPU Functions", "args": args}


def table(output):
    """{op: (self ms, inclusive ms, calls)} from the tool's table."""
    rows = {}
    for line in output.splitlines()[2:]:
        self_ms, total_ms, calls, name = line.split(None, 3)
        rows[name] = (float(self_ms), float(total_ms), float(calls))
    return rows


def main():
    args = remora_and_fresh_work()
    check = Checks()

    # Five loss backwards: the steady state is [the 4th, the 5th), one step. In it: `outer` (500 µs) calls
    # four GEMMs (200 + 3 x 10 µs); `stalled` (1100 µs) calls one of 1000 µs, over 20x the GEMMs' median
    # (10 µs) + 200: left out, and out of `stalled`'s figures too. Before the window: ignored.
    events = [event(LOSS_BACKWARD, 1000 * i, 10) for i in range(5)]
    # The first GEMM is [85, 100] x [100, 100] (1.7e6 FLOPs in the 170 µs of its own), the three inside
    # it [50, 40] x [40, 30].
    events += [event("outer", 3100, 500), event("aten::mm", 3150, 200, [[85, 100], [100, 100]])]
    events += [event("aten::mm", 3300 + 20 * i, 10, [[50, 40], [40, 30]]) for i in range(3)]
    events += [event("stalled", 3750, 1100), event("aten::mm", 3760, 1000), event("aten::mm", 500, 90000)]
    trace = os.path.join(args.work, "made.json")
    with open(trace, "w") as f:
        json.dump(events, f)
    output = run([sys.executable, TOOL, trace])
    first = output.splitlines()[0]
    check("the window is one step", first.startswith("1 step(s);"), first)
    check("top-level time without the stall: 10 + 500 + 100 µs", "top-level ops 0.6 ms" in first, first)
    check("the stall is reported", "stalls left out 1.0 ms" in first, first)
    rows = table(output)
    check("aten::mm: 230 µs in 4 calls", rows.get("aten::mm") == (0.2, 0.2, 4.0), rows.get("aten::mm"))
    check("outer: 270 µs of its own, 500 in all", rows.get("outer") == (0.3, 0.5, 1.0), rows.get("outer"))
    check("stalled: 100 µs left", rows.get("stalled") == (0.1, 0.1, 1.0), rows.get("stalled"))
    callers = run([sys.executable, TOOL, trace, "--op", "aten::mm"])
    check("--op lists the callers", "0.2 ms  outer" in callers, callers)
    by_shape = [line.strip() for line in run([sys.executable, TOOL, trace, "--shapes"]).splitlines()]
    check("--shapes: 1.7e6 FLOPs in 170 µs are 10 GFLOP/s",
          "0.2      0.2     1.0  aten::mm [85,100] [100,100]  10 GFLOP/s" in by_shape, by_shape)
    check("--shapes: 3 x 120000 FLOPs in 30 µs are 12 GFLOP/s",
          "0.0      0.0     3.0  aten::mm [50,40] [40,30]  12 GFLOP/s" in by_shape, by_shape)

    # A real trace: a toy model, four timed steps of ReMix after bench's three warm-up steps.
    remora = args.remora
    data = os.path.join(ROOT, "data", "colors.jsonl")
    tokenizer, model = os.path.join(args.work, "tokenizer"), os.path.join(args.work, "model")
    run([remora, "train-tokenizer", "--corpus", data, "--vocab-size", "400", "--out", tokenizer])
    run([remora, "init-model", "--preset", "toy", "--tokenizer", tokenizer, "--out", model])
    trace = os.path.join(args.work, "remix.json")
    env = dict(os.environ, REMORA_PROFILE=trace)
    bench = subprocess.run([remora, "--threads", "2", "bench", "--gemm-size", "128", "--min-seconds", "0.1",
                            "--recipe", os.path.join(ROOT, "configs", "remix.yaml"), "--steps", "4",
                            f"model.path={model}", f"data.train={data}", "train.batch_size=2"],
                           capture_output=True, text=True, env=env)
    check("bench --recipe runs", bench.returncode == 0, bench.stderr.strip()[-300:])
    if bench.returncode == 0:
        result = json.loads(bench.stdout.strip().splitlines()[-1])
        check("it reports tokens/s", result.get("train_tokens_per_second", 0) > 0, result)
        output = run([sys.executable, TOOL, trace, "--top", "200"])
        check("the steady state is the last three steps", output.startswith("3 step(s);"), output[:200])
        rows = table(output)
        check("GEMMs in every step", rows.get("aten::mm", (0, 0, 0))[2] > 0, rows.get("aten::mm"))
        loss = [row for name, row in rows.items() if name.startswith("autograd::engine") and "TokenCrossEntropy" in name]
        check("the loss's backward once a step", [row[2] for row in loss] == [1.0], loss)
        with open(trace) as f:
            gemms = [e for e in json.load(f) if e["name"] == "aten::mm"]
        dims = [e["args"].get("Input Dims", []) for e in gemms]
        check("every GEMM has its two input shapes, [m, k] x [k, n]",
              gemms and all(len(d) == 2 and len(d[0]) == 2 and d[0][1] == d[1][0] for d in dims), dims[:3])
        by_shape = run([sys.executable, TOOL, trace, "--shapes", "--top", "500"]).splitlines()
        check("--shapes gives GEMMs a row per shape with a rate",
              any(" aten::mm [" in line and line.endswith(" GFLOP/s") for line in by_shape), by_shape[:10])
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
