#!/usr/bin/python3
"""Multi-process training on loopback, as users start it (`remora launch`, torchrun): 2 workers x micro-batch
2 reproduce 1 worker x micro-batch 4 (LoRA, ReMix with RLOO, SMoRA, top-k), runs are bit-identical to each
other, two "nodes" give the same result, a killed or hung worker ends the run within its timeout naming the
rank, and --resume then finishes with the uninterrupted adapter.

    distributed_train.py --remora build/src/remora --work /tmp/dist
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import safetensors_py  # noqa: E402
sys.path.insert(0, HERE)
from checks import Checks, remora_and_fresh_work  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "data", "colors.jsonl")
TORCHRUN = "/usr/bin/torchrun"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_of(launcher, rank):
    """The pid of the launcher's worker with RANK=rank (from its environment), or None."""
    children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"RANK={rank}".encode() in f.read().split(b"\0"):
                return int(pid)
    return None


def signal_worker(launcher, rank, signum):
    """Sends `signum` to the launcher's worker `rank`: (its pid, the launcher's stderr, seconds until the
    launcher exited)."""
    pid = worker_of(launcher, rank)
    sent = time.monotonic()
    if pid:
        os.kill(pid, signum)
    _, stderr = launcher.communicate(timeout=120)
    return pid, stderr, time.monotonic() - sent


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r[key] for key in ("loss", "validation_loss") for r in records if r.get(key) is not None]


def adapter_bytes(out):
    with open(os.path.join(out, "adapter", "adapter_model.safetensors"), "rb") as f:
        return f.read()


def differences(a_out, b_out):
    """(losses, adapter): the largest |a - b| / |a| over the logged losses, and over the adapter's tensors
    the largest ||a - b|| / ||a|| (Frobenius: single near-zero elements, which Adam's normalised step
    moves by up to the learning rate on a rounding difference, do not decide it)."""
    a = safetensors_py.load(os.path.join(a_out, "adapter", "adapter_model.safetensors"))
    b = safetensors_py.load(os.path.join(b_out, "adapter", "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    adapter = max((a[k] - b[k]).norm().item() / max(a[k].norm().item(), 1e-30) for k in a)
    la, lb = losses(a_out), losses(b_out)
    assert len(la) == len(lb), (len(la), len(lb))
    return max(abs(x - y) / abs(x) for x, y in zip(la, lb)), adapter


def main():
    args = remora_and_fresh_work()
    check = Checks()
    remora = os.path.abspath(args.remora)
    work = os.path.abspath(args.work)
    model = os.path.join(work, "model")
    subprocess.run([remora, "train-tokenizer", "--corpus", DATA, "--vocab-size", "300", "--out",
                    os.path.join(work, "tok")], check=True, capture_output=True)
    subprocess.run([remora, "init-model", "--preset", "toy", "--tokenizer", os.path.join(work, "tok"), "--out", model],
                   check=True, capture_output=True)
    # Nine examples: micro-batches of 4, 4 and 1, so in the last one the second worker has no row.
    small = os.path.join(work, "small.jsonl")
    with open(DATA) as f, open(small, "w") as g:
        g.writelines(f.readlines()[:9])

    long_run = ("train.steps=40", "output.checkpoint_every=1", "eval.every=0")

    def recipe(config, out, *extra):
        return ["train", os.path.join(ROOT, "configs", config), f"model.path={model}", f"data.train={DATA}",
                f"output.dir={os.path.join(work, out)}", "train.steps=6", "log.every=1", "eval.every=3", "threads=1",
                "model.dtype=float32", "output.checkpoint_every=2", "train.dist_timeout=20", *extra]

    def single(config, out, *extra):
        return subprocess.run([remora, *recipe(config, out, "train.batch_size=4", *extra)], capture_output=True, text=True)

    def launch(config, out, *extra, nproc=2, port=None, launch_args=()):
        command = [remora, "launch", "--nproc-per-node", str(nproc), "--master-port", str(port or free_port()),
                   *launch_args, "--", *recipe(config, out, f"train.batch_size={4 // nproc}", *extra)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    def long_launch(out, *extra, launch_args=()):
        """A 2-worker ReMix run long enough to interrupt (40 steps, a checkpoint after each)."""
        return [remora, "launch", "--nproc-per-node", "2", "--master-port", str(free_port()), *launch_args, "--",
                *recipe("remix.yaml", out, "train.batch_size=2", *long_run, *extra)]

    def start_until_checkpoints(command, out, count):
        """Starts `command`; returns it once `out` holds `count` checkpoints (or after two minutes)."""
        launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        checkpoints = os.path.join(work, out, "checkpoints")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (os.path.isdir(checkpoints) and len(os.listdir(checkpoints)) >= count):
            time.sleep(0.05)
        return launcher

    def succeeded(label, result):
        if result.returncode != 0:
            check(label, False, result.stderr.strip()[-400:])
        return result.returncode == 0

    # 1. Two workers reproduce one process that takes their whole micro-batch.
    cases = [("lora", "lora.yaml", "lora", ()), ("smora", "smora.yaml", "smora", ()),
             ("topk (balance loss)", "topk.yaml", "topk", ()),
             # (Adam's eps 1e-8 would turn a rounding-level gradient, of an expert's factors that one token
             # chose, into a whole +-lr step of its sign: 1e-6 keeps the comparison about the routes.)
             ("remix, frozen router (routes sampled as one process samples them)", "remix.yaml", "remix_frozen",
              ("adapter.router_objective=frozen", "train.grad_accum=2", "optim.eps=1e-6")),
             ("remix, a worker without rows in the last micro-batch", "remix.yaml", "remix_small",
              (f"data.train={small}", "train.steps=0", "data.validation_fraction=0", "adapter.router_objective=frozen",
               "optim.eps=1e-6"))]
    for name, config, tag, extra in cases:
        one, two = single(config, f"{tag}_1x4", *extra), launch(config, f"{tag}_2x2", *extra)
        if succeeded(f"{name}: 1 worker", one) and succeeded(f"{name}: 2 workers", two):
            loss, adapter = differences(os.path.join(work, f"{tag}_1x4"), os.path.join(work, f"{tag}_2x2"))
            check(f"{name}: 2 workers x micro-batch 2 = 1 worker x micro-batch 4", loss <= 1e-5 and adapter <= 1e-5,
                  f"losses {loss:.1e}, adapter {adapter:.1e} (relative)")
    # A trained ReMix router follows RLOO advantages, differences of nearly equal losses, through Adam's
    # normalised step: any change of summation order (one process with 2 threads instead of 1, too) moves
    # its weights by far more than 1e-5 within a few steps, and the adapters with them. So the losses are
    # held to 1e-5 and the adapter's difference is reported beside one process's own 1- vs 2-thread one;
    # the gradients (routes included) are held to 1e-4 by tests/unit/data_parallel_test.cpp, and the
    # routes by the frozen-router cases above.
    runs = {tag: (single if tag.endswith("1x4") else launch)("remix.yaml", tag, "train.grad_accum=2", *threads)
            for tag, threads in (("remix_1x4", ()), ("remix_2x2", ()), ("remix_1x4_2threads", ("threads=2",)))}
    if all(succeeded(f"remix: {tag}", result) for tag, result in runs.items()):
        loss, adapter = differences(os.path.join(work, "remix_1x4"), os.path.join(work, "remix_2x2"))
        _, threads = differences(os.path.join(work, "remix_1x4"), os.path.join(work, "remix_1x4_2threads"))
        check("remix (RLOO): 2 workers x micro-batch 2 = 1 worker x micro-batch 4 (losses per step)", loss <= 1e-5,
              f"losses {loss:.1e}; adapter {adapter:.1e} (one process, 1 vs 2 threads: {threads:.1e})")

    # 2. Runs are reproducible bit for bit, however the workers are started.
    reference = os.path.join(work, "remix_2x2")
    again = launch("remix.yaml", "remix_again", "train.grad_accum=2")
    if succeeded("remix: second 2-worker run", again):
        check("two 2-worker runs are bit-identical", adapter_bytes(os.path.join(work, "remix_again")) == adapter_bytes(reference)
              and losses(os.path.join(work, "remix_again")) == losses(reference))
    port = free_port()
    nodes = [subprocess.Popen([remora, "launch", "--nnodes", "2", "--node-rank", str(i), "--nproc-per-node", "1",
                               "--master-addr", "127.0.0.1", "--master-port", str(port), "--",
                               *recipe("remix.yaml", "remix_nodes", "train.batch_size=2", "train.grad_accum=2")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    codes = [n.wait(timeout=300) for n in nodes]
    if codes == [0, 0]:
        check("two nodes on loopback (two launch commands) give the same adapter",
              adapter_bytes(os.path.join(work, "remix_nodes")) == adapter_bytes(reference))
    else:
        check("two nodes on loopback", False, " | ".join(n.stderr.read().strip()[-300:] for n in nodes))
    if os.path.exists(TORCHRUN):
        # (--redirects 1 --tee 1: Debian 12's torchrun, PyTorch 1.13 under Python 3.11, cannot parse its own
        # default of 0, as Python 3.11 no longer iterates IntFlag's zero member.)
        result = subprocess.run([TORCHRUN, "--no_python", "--redirects", "1", "--tee", "1", "--log_dir",
                                 os.path.join(work, "torchrun_logs"), "--nproc_per_node", "2", "--master_port", str(free_port()),
                                 remora, *recipe("remix.yaml", "remix_torchrun", "train.batch_size=2", "train.grad_accum=2")],
                                capture_output=True, text=True, timeout=300)
        if succeeded("torchrun --no_python starts remora train", result):
            check("torchrun's environment gives the same adapter as remora launch",
                  adapter_bytes(os.path.join(work, "remix_torchrun")) == adapter_bytes(reference))

    # 3. A worker killed with kill -9: the run ends, naming it; --resume ends as the uninterrupted run.
    uninterrupted = launch("remix.yaml", "long_reference", *long_run)
    succeeded("uninterrupted 40-step run", uninterrupted)
    out = os.path.join(work, "long_killed")
    command = long_launch("long_killed")
    launcher = start_until_checkpoints(command, "long_killed", 2)
    victim, stderr, seconds = signal_worker(launcher, 1, signal.SIGKILL)
    check("kill -9 of rank 1: the launcher exits non-zero within the timeout and names the rank",
          victim and launcher.returncode != 0 and seconds < 20 and "rank 1" in stderr and "signal 9" in stderr,
          f"exit {launcher.returncode} after {seconds:.1f} s: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}")
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    if succeeded("--resume after the kill", resumed):
        check("--resume after kill -9 ends with the uninterrupted run's adapter",
              adapter_bytes(out) == adapter_bytes(os.path.join(work, "long_reference")))

    # 4. A hung worker (SIGSTOP): the others give up after train.dist_timeout.
    out = os.path.join(work, "hung")
    launcher = start_until_checkpoints(long_launch("hung", "train.dist_timeout=4", launch_args=("--stop-timeout", "2")),
                                       "hung", 1)
    checkpoints = os.path.join(out, "checkpoints")
    hung, stderr, seconds = signal_worker(launcher, 1, signal.SIGSTOP)
    check("a hung worker: the run ends non-zero after train.dist_timeout (4 s) plus --stop-timeout (2 s)",
          hung and launcher.returncode != 0 and seconds < 15 and "train.dist_timeout" in stderr,
          f"exit {launcher.returncode} after {seconds:.1f} s")
    latest = sorted(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else []
    check("the last checkpoint is complete", latest and os.path.exists(os.path.join(checkpoints, latest[-1], "progress.json")))

    # 5. A signal to the launcher: every worker stops at the same step with a checkpoint; --resume finishes.
    out = os.path.join(work, "interrupted")
    command = long_launch("interrupted")
    launcher = start_until_checkpoints(command, "interrupted", 1)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=120)
    check("SIGTERM to the launcher: exit 130 with a checkpoint", launcher.returncode == 130,
          f"exit {launcher.returncode}: {stderr.strip()[-300:]}")
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    if succeeded("--resume after SIGTERM", resumed):
        check("--resume after SIGTERM ends with the uninterrupted run's adapter",
              adapter_bytes(out) == adapter_bytes(os.path.join(work, "long_reference")))

    # 6. Another worker count: the same micro-batches resume; others are refused by name.
    wrong = subprocess.run([remora, *recipe("remix.yaml", "long_killed", "train.batch_size=2", *long_run), "--resume"],
                           capture_output=True, text=True)
    check("resuming a 2-worker checkpoint with 1 worker x 2 is refused, naming the micro-batch size",
          wrong.returncode != 0 and "train.batch_size x workers = 4" in wrong.stderr, wrong.stderr.strip()[-300:])

    finished = subprocess.run([remora, *recipe("remix.yaml", "hung", "train.batch_size=4", *long_run), "--resume"],
                              capture_output=True, text=True)
    check("the hung 2-worker run finishes on 1 worker with train.batch_size doubled (--resume)",
          finished.returncode == 0 and os.path.exists(os.path.join(work, "hung", "adapter")), finished.stderr.strip()[-300:])

    # 7. Rendezvous failures are one-line errors.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = launch("lora.yaml", "busy", "train.dist_timeout=5", port=port)
    lines = [line for line in result.stderr.splitlines() if line.startswith("remora: error: rank 0")]
    check("a master port in use: one-line error from rank 0 naming the address", result.returncode != 0 and lines
          and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], result.stderr.strip()[-300:])
    started = time.monotonic()
    result = subprocess.run([remora, "launch", "--nnodes", "2", "--node-rank", "1", "--master-port", str(free_port()), "--",
                             *recipe("lora.yaml", "unreachable", "train.dist_timeout=3")], capture_output=True, text=True, timeout=120)
    check("an unreachable master: non-zero within the timeout, one line naming the rendezvous",
          result.returncode != 0 and "cannot reach the rendezvous" in result.stderr and time.monotonic() - started < 30,
          result.stderr.strip()[-300:])
    port = free_port()
    nodes = [subprocess.Popen([remora, "launch", "--nnodes", "2", "--node-rank", str(i), "--master-port", str(port), "--",
                               *recipe("lora.yaml", "disagree", f"train.steps={6 + i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    errors = [n.communicate(timeout=120)[1] for n in nodes]
    check("workers with different recipes stop at once, saying so",
          all(n.returncode != 0 for n in nodes) and all("the workers disagree on the recipe" in e for e in errors),
          " | ".join(e.strip()[-200:] for e in errors))
    check("no output folder is left by runs that never started",
          not any(os.path.exists(os.path.join(work, name)) for name in ("busy", "unreachable", "disagree")))
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
