#!/usr/bin/env python3
# Where a step's time goes: self and inclusive milliseconds per step of each op in a REMORA_PROFILE trace.
#
#   REMORA_PROFILE=trace.json remora bench --recipe R.yaml --steps 8 ...
#   python3 bench/profile_ops.py trace.json [--top 30] [--op aten::mm | --shapes]
#
# A training trace is cut to its steady state: from the 4th backward of the loss to the last (the
# first three steps are bench's warm-up), so every figure is per step (one backward, optimizer step
# and forward; --steps N gives N - 1 of them). Other traces (decode) are read whole, per trace.
# "Self" is an op's time less the ops it called, on its own thread. Calls longer than 20 times their
# op's median (the machine stalling; one 200 ms logsumexp has been seen) are left out and reported on
# the first line, so that one stall does not pass for an op's cost. --op lists what called that op
# instead (the chain of its three nearest callers). --shapes keeps ops with different input shapes
# apart (REMORA_PROFILE records them), with the GFLOP/s of each matrix product's shape.
import argparse
import collections
import json
import math
import statistics


def load(path):
    events = [e for e in json.load(open(path)) if e.get("ph") == "X"]
    marks = sorted(e["ts"] for e in events
                   if e["name"].startswith("autograd::engine::evaluate_function") and "TokenCrossEntropy" in e["name"])
    if len(marks) >= 5:
        events = [e for e in events if marks[3] <= e["ts"] < marks[-1]]
        return events, len(marks) - 4, "step"
    return events, 1, "trace"


def stalls(events):
    """The events over 20x (+0.2 ms) their op's median duration."""
    durations = collections.defaultdict(list)
    for e in events:
        durations[e["name"]].append(e["dur"])
    median = {name: statistics.median(d) for name, d in durations.items()}
    return {id(e) for e in events if e["dur"] > 20 * median[e["name"]] + 200}


def product_flops(name, dims):
    """FLOPs of a matrix product from its input shapes ([.., m, k] x [.., k, n]), else None."""
    if name not in ("aten::mm", "aten::bmm") or len(dims) < 2 or len(dims[0]) != len(dims[1]) or len(dims[0]) < 2:
        return None
    a, b = dims[0], dims[1]
    return 2 * math.prod(a) * b[-1]


def key(e, shapes):
    """The name an event is summed under: the op, or the op and its input shapes."""
    if not shapes:
        return e["name"]
    dims = [d for d in e.get("args", {}).get("Input Dims", []) if d]
    return " ".join([e["name"]] + ["[" + ",".join(map(str, d)) + "]" for d in dims])


def walk(events):
    """(event, its callers nearest first) for every event, per thread in time order."""
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[e["tid"]].append(e)
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in thread_events:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            yield e, stack[::-1]
            stack.append(e)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--op", help="list the callers of this op instead")
    parser.add_argument("--shapes", action="store_true", help="one row per op and input shapes")
    a = parser.parse_args()
    events, count, unit = load(a.trace)
    stalled = stalls(events)
    self_us, total_us, calls = collections.Counter(), collections.Counter(), collections.Counter()
    callers = collections.Counter()
    row = {id(e): key(e, a.shapes) for e in events}  # what each event is summed under
    flops = {row[id(e)]: product_flops(e["name"], e.get("args", {}).get("Input Dims", []))
             for e in events} if a.shapes else {}
    top_level = stalled_us = 0.0
    for e, stack in walk(events):
        if any(id(s) in stalled for s in stack):
            continue  # inside a stall: counted with it
        if stack:
            self_us[row[id(stack[0])]] -= e["dur"]
        if id(e) in stalled:  # out of its callers' figures too
            stalled_us += e["dur"]
            for s in stack:
                total_us[row[id(s)]] -= e["dur"]
            top_level -= e["dur"] if stack else 0
            continue
        if not stack:
            top_level += e["dur"]
        name = row[id(e)]
        self_us[name] += e["dur"]
        total_us[name] += e["dur"]
        calls[name] += 1
        if e["name"] == a.op:
            callers[" < ".join(s["name"] for s in stack[:3]) or "(called by remora)"] += e["dur"]
    ms = lambda us: us / 1000 / count  # noqa: E731
    print(f"{count} {unit}(s); top-level ops {ms(top_level):.1f} ms per {unit}, stalls left out {ms(stalled_us):.1f} ms")
    if a.op:
        for chain, us in callers.most_common(a.top):
            print(f"{ms(us):8.1f} ms  {chain}")
        return
    print(f"{'self ms':>8} {'incl ms':>8} {'calls':>7}  op (per {unit})" + (", GFLOP/s of products" if a.shapes else ""))
    for name, us in self_us.most_common(a.top):
        rate = f"  {flops[name] * calls[name] / us / 1e3:.0f} GFLOP/s" if flops.get(name) and us > 0 else ""
        print(f"{ms(us):8.1f} {ms(total_us[name]):8.1f} {calls[name] / count:7.1f}  {name}{rate}")


if __name__ == "__main__":
    main()
