#!/usr/bin/python3
"""The reproduction suite, one command: generates the task mixture, pretrains (and caches) the base,
sweeps each method's learning rate on the validation split, trains every method and study over 3
seeds, evaluates on the test split, and writes results.json, results.md and results.html.

  python3 bench/repro/run.py [--quick] [--work DIR] [--out DIR] [--remora PATH] [--threads N]

Resumable: a run whose evaluation is written is never redone, so stopping and starting again
continues where it stopped. Every model is trained, scored, inspected and routed by remora's verbs."""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plan  # noqa: E402
import report  # noqa: E402
import tasks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
class RunFailed(Exception):
    pass


TASK_METRICS = {"arithmetic": "exact_match,strict-match", "lists": "exact_match,none", "facts": "acc,none"}


class Suite:
    def __init__(self, args, scale):
        self.args, self.scale, self.work = args, scale, os.path.abspath(args.work)
        self.started, self.done_runs = time.time(), 0
        os.makedirs(os.path.join(self.work, "runs"), exist_ok=True)

    def remora(self, *argv, log=None):
        """stdout of a remora command; RunFailed (with remora's one-line error) if it fails."""
        command = [self.args.remora, "--threads", str(self.args.threads), *argv]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if log:
            with open(log, "w") as f:
                f.write(" ".join(command) + "\n" + result.stdout + result.stderr)
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise RunFailed(f"remora {argv[0]} failed: {message}\n  command: {' '.join(command)}")
        return result.stdout

    def say(self, text):
        elapsed = int(time.time() - self.started)
        print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}", flush=True)

    # --- data and base ---------------------------------------------------------------------------

    def make_data(self):
        data = os.path.join(self.work, "data")
        if os.path.exists(os.path.join(data, "done")):
            return
        os.makedirs(data, exist_ok=True)
        world, problems, corpus = tasks.generate(seed=2026, sizes=self.scale["sizes"])
        tasks.check_disjoint(problems, corpus)
        for split in ("train", "validation"):
            rows = [tasks.training_row(t, p) for t, splits in problems.items() for p in splits[split]]
            tasks.write_jsonl(os.path.join(data, f"{split}.jsonl"), rows)
        for t, splits in problems.items():
            tasks.write_jsonl(os.path.join(data, f"test_{t}.jsonl"), splits["test"])
        tasks.write_jsonl(os.path.join(data, "test_mixture.jsonl"),
                          [tasks.training_row(t, p) for t, splits in problems.items() for p in splits["test"]])
        tasks.write_jsonl(os.path.join(data, "corpus.jsonl"), [{"text": line} for line in corpus])
        with open(os.path.join(data, "tokenizer_corpus.txt"), "w") as f:  # plain text: no JSON syntax
            f.write("\n".join(corpus) + "\n")
            for t, splits in problems.items():
                f.writelines(r["prompt"] + r["completion"] + "\n" for r in map(lambda p: tasks.training_row(t, p), splits["train"]))
        with open(os.path.join(data, "tasks.yaml"), "w") as f:
            f.write("tasks:\n"
                    "  - {task: generate, data: test_arithmetic.jsonl, name: arithmetic, max_new_tokens: 48, batch_size: 32}\n"
                    "  - {task: generate, data: test_lists.jsonl, name: lists, max_new_tokens: 20, batch_size: 32}\n"
                    "  - {task: choice, data: test_facts.jsonl, name: facts, batch_size: 32}\n")
        counts = {t: {s: len(v) for s, v in splits.items()} for t, splits in problems.items()}
        with open(os.path.join(data, "sizes.json"), "w") as f:
            json.dump({"problems": counts, "corpus_lines": len(corpus), "creatures": len(world)}, f, indent=1)
        open(os.path.join(data, "done"), "w").close()
        self.say(f"data: {counts}, {len(corpus)} corpus lines")

    def make_base(self):
        base = os.path.join(self.work, "base")
        if os.path.isdir(os.path.join(base, "model")):
            return
        data = os.path.join(self.work, "data")
        self.say(f"base: tokenizer, init, pretraining {self.scale['base_steps']} steps (method: full)")
        self.remora("train-tokenizer", "--corpus", f"{data}/tokenizer_corpus.txt",
                    "--vocab-size", str(plan.VOCAB), "--out", f"{base}/tokenizer", "--overwrite")
        self.remora("init-model", "--arch", "llama", *plan.MODEL, "--tokenizer", f"{base}/tokenizer",
                    "--out", f"{base}/init", "--overwrite", "--seed", "1")
        self.remora("train", "configs/full.yaml", f"model.path={base}/init", f"data.train={data}/corpus.jsonl",
                    "data.format=text", f"train.steps={self.scale['base_steps']}", "train.batch_size=32",
                    f"threads={self.args.threads}",
                    "optim.lr=3e-3", "schedule.warmup_steps=50", f"output.dir={base}/run", "output.overwrite=true",
                    "output.checkpoint_every=0", "log.every=50", log=f"{base}.log")
        os.replace(f"{base}/run/model", f"{base}/model")

    # --- runs ------------------------------------------------------------------------------------

    def train_argv(self, run):
        folder = os.path.join(self.work, "runs", run["name"])
        return ["train", run["recipe"], *plan.common_overrides(self.work, self.scale, self.args.threads),
                *run["overrides"], f"output.dir={folder}"]

    def trained_as_planned(self, run):
        """Whether the run's adapter came from the command the plan gives now (recorded next to it)."""
        folder = os.path.join(self.work, "runs", run["name"])
        return os.path.isdir(os.path.join(folder, "adapter")) and read_json(folder + ".json") in (None, self.train_argv(run))

    def train(self, run):
        folder = os.path.join(self.work, "runs", run["name"])
        argv = self.train_argv(run)
        if self.trained_as_planned(run):
            return folder
        for stale in ("eval.json", "eval_sampled.json"):  # scores of an adapter trained another way
            if os.path.exists(os.path.join(folder, stale)):
                os.remove(os.path.join(folder, stale))
        self.remora(*argv, log=folder + ".train.log")
        with open(folder + ".json", "w") as f:
            json.dump(argv, f)
        return folder

    def evaluate(self, path, *adapter_args):
        """The test split's metrics of the base with `adapter_args` (--adapter DIR ...), cached in `path`."""
        if not os.path.exists(path):
            self.remora("eval", "--model", f"{self.work}/base/model", *adapter_args,
                        "--tasks", f"{self.work}/data/tasks.yaml", "--output", path + ".tmp")
            os.replace(path + ".tmp", path)
        return scores_of(path)

    def run(self, run, total):
        folder = os.path.join(self.work, "runs", run["name"])
        fresh = not os.path.exists(os.path.join(folder, "eval.json")) or not self.trained_as_planned(run)
        if fresh and self.done_runs == 0:  # already-finished runs are counted as done
            self.done_runs = len([d for d in os.listdir(os.path.dirname(folder))
                                  if os.path.exists(os.path.join(os.path.dirname(folder), d, "eval.json"))])
        if fresh:
            self.done_runs += 1
            self.say(f"run {self.done_runs} of {total}: {run['name']}")
        self.train(run)
        scores = self.evaluate(os.path.join(folder, "eval.json"), "--adapter", f"{folder}/adapter")
        return {"name": run["name"], "seed": run["seed"], "lr": run["lr"], "scores": scores,
                "curve": read_metrics(folder)}

    def budget(self, method, folder):
        text = self.remora("inspect", f"{self.work}/base/model", "--adapter", f"{folder}/adapter")
        count = lambda key: int(re.search(rf"^{key}\s+(\d+)", text, re.M).group(1))  # noqa: E731
        return {"trainable": count("trainable"), "activated": count("activated"), "overrides": plan.METHODS[method][1]}

    def routing(self, topk, remix):
        path = os.path.join(self.work, f"routing_{os.path.basename(topk)}_{os.path.basename(remix)}.json")
        if not os.path.exists(path):
            self.remora("routing", "--model", f"{self.work}/base/model", "--data", f"{self.work}/data/test_mixture.jsonl",
                        "--format", "prompt_completion", "--adapter", f"{topk}/adapter", "--label", "topk",
                        "--adapter", f"{remix}/adapter", "--label", "remix", "--json", path + ".tmp")
            os.replace(path + ".tmp", path)
        with open(path) as f:
            return {a["label"]: [{"site": s["site"], "mean_ess": s["mean_ess"]} for s in a["sites"]]
                    for a in json.load(f)["adapters"]}


def scores_of(path):
    """The suite's metric of each task from an `eval --output` file."""
    with open(path) as f:
        results = json.load(f)["results"]
    return {t: results[t][m] for t, m in TASK_METRICS.items()} | {"facts_norm": results["facts"]["acc_norm,none"]}


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_metrics(folder):
    """Loss, final validation loss and the per-step mean ESS over routers, from metrics.jsonl."""
    steps, loss, ess, validation = [], [], [], None
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for record in map(json.loads, f):
            if "validation_loss" in record:
                validation = record["validation_loss"]
            if "loss" not in record:
                continue
            steps.append(record["step"])
            loss.append(record["loss"])
            sites = record.get("routing", [])
            ess.append(sum(s["mean_ess"] for s in sites) / len(sites) if sites else None)
    return {"steps": steps, "loss": loss, "mean_ess": ess, "validation_loss": validation}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few steps and one seed: checks the pipeline, not the claims")
    parser.add_argument("--work", default=None, help="runs and caches (default: runs/repro or runs/repro_quick)")
    parser.add_argument("--out", default=None, help="where results.{json,md,html} go (default: the work folder)")
    parser.add_argument("--remora", default=os.path.join(ROOT, "build", "src", "remora"))
    parser.add_argument("--threads", type=int, default=2,
                        help="threads per remora run (the committed figures used 2; another count changes the rounding)")
    args = parser.parse_args()
    args.work = args.work or os.path.join(ROOT, "runs", "repro_quick" if args.quick else "repro")
    args.out = args.out or args.work
    scale = plan.QUICK if args.quick else plan.FULL
    suite = Suite(args, scale)
    os.makedirs(args.work, exist_ok=True)

    suite.make_data()
    suite.make_base()
    base = suite.evaluate(os.path.join(args.work, "base", "eval.json"))

    sweep = plan.sweep_runs(scale)
    # The sweep, the other seeds of each method, and the ReMix settings that differ from the main run.
    seeds = len(scale["seeds"])
    total = len(sweep) + len(plan.METHOD_ORDER) * (seeds - 1) + (7 + len(plan.INVESTIGATIONS)) * seeds
    sweep_results = {m: {} for m in plan.METHOD_ORDER}
    for run in sweep:
        try:
            loss = suite.run(run, total)["curve"]["validation_loss"]
        except RunFailed as error:  # a learning rate that diverges loses the sweep, it does not stop it
            suite.say(f"  {run['name']}: {str(error).splitlines()[0]}")
            loss = None
        sweep_results[run["method"]][f"{run['lr']:g}"] = loss if loss is not None and math.isfinite(loss) else None
    lr_of = {m: float(min((lr for lr in losses if losses[lr] is not None), key=losses.get))
             for m, losses in sweep_results.items()}

    results = {"quick": args.quick, "scale": scale, "base": base, "lr_sweep": sweep_results, "lr": lr_of,
               "methods": {}, "budget": {}, "studies": {}}
    for method in plan.METHOD_ORDER:
        runs = [suite.run(r, total) for r in plan.main_runs(scale, lr_of) if r["method"] == method]
        results["methods"][method] = runs
        results["budget"][method] = suite.budget(method, os.path.join(args.work, "runs", runs[0]["name"]))

    for (study, value), runs in plan.study_runs(scale, lr_of["remix"]).items():
        results["studies"].setdefault(study, {})[str(value)] = [suite.run(r, total) for r in runs]
    # No top-k: the main ReMix adapters sampling their experts at inference (routing seed = run seed).
    results["studies"]["inference"] = {"top-k": results["methods"]["remix"], "sampled": [
        {"name": r["name"], "seed": r["seed"], "scores": suite.evaluate(
            os.path.join(args.work, "runs", r["name"], "eval_sampled.json"),
            "--adapter", os.path.join(args.work, "runs", r["name"], "adapter"),
            "--adapter-set", "sample_at_inference=true", "--routing-seed", str(r["seed"]))}
        for r in results["methods"]["remix"]]}
    first = lambda m: os.path.join(args.work, "runs", results["methods"][m][0]["name"])  # noqa: E731
    results["routing"] = suite.routing(first("topk"), first("remix"))
    with open(os.path.join(args.work, "data", "sizes.json")) as f:
        results["data"] = json.load(f)

    os.makedirs(args.out, exist_ok=True)
    report.write(results, args.out)
    suite.say(f"wrote {args.out}/results.md, results.html, results.json")


if __name__ == "__main__":
    try:
        main()
    except RunFailed as error:
        sys.exit(f"repro: {error}")
