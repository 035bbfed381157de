#!/usr/bin/python3
"""The reproduction suite's quick slice end to end: every part of the pipeline produces its numbers
(not what they are), the test split shares no problem with training, a second invocation redoes
nothing, and the results page renders in headless Chromium showing exactly the numbers of results.json."""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402
from report_browser import check_report  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SUITE = os.path.join(ROOT, "bench", "repro", "run.py")
METHODS = ["lora", "rslora", "molora", "topk", "hydra", "smora", "remix"]
TASKS = ["arithmetic", "lists", "facts", "avg"]


def op_word(op):
    """A word of the corpus sentence that states `op` (tasks.py writes one sentence form per op)."""
    return {"first": "first", "last": "last", "reverse": "reverse", "sort": "Sorted", "max": "largest",
            "min": "smallest", "len": "items.", "sum": "add up"}[op]


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def numbers_present(summary, results):
    """Every figure the page and results.md are built from, as (label, value)."""
    out = [(f"{m} {t}", summary["methods"][m][t]["mean"]) for m in METHODS for t in TASKS]
    out += [(f"{m} activated", results["budget"][m]["activated"]) for m in METHODS]
    out += [(f"{m} lr", results["lr"][m]) for m in METHODS]
    expected = {"k": ["1", "2", "3", "4"], "M": ["2", "4", "8"], "objective": ["rloo", "reinforce", "frozen"],
                "inference": ["top-k", "sampled"]}
    for study, values in expected.items():
        out += [(f"{study} {v}", summary["studies"].get(study, {}).get(v, {}).get("avg", {}).get("mean")) for v in values]
    out += [(f"investigation {v}", s["avg"]["mean"]) for v, s in summary["studies"].get("investigation", {}).items()]
    for m in ("topk", "remix"):
        curve = [v for v in summary["ess"][m]["mean_ess"] if v is not None]
        out.append((f"{m} ESS curve", curve[-1] if curve else None))
        out.append((f"{m} test routing", results["routing"][m][0]["mean_ess"] if results["routing"].get(m) else None))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remora", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    check = Checks()
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)  # a fresh suite: the first invocation must train everything
    command = ["/usr/bin/python3", SUITE, "--quick", "--work", work, "--remora", args.remora]

    started = time.time()
    first = subprocess.run(command, capture_output=True, text=True)
    check("quick slice runs", first.returncode == 0, f"{time.time() - started:.0f} s; " + first.stderr[-600:])
    if first.returncode != 0:
        return check.finish()
    check("progress on the terminal", "run 1 of" in first.stdout and "wrote" in first.stdout, first.stdout[-300:])

    with open(os.path.join(work, "results.json")) as f:
        document = json.load(f)
    results, summary = document["results"], document["summary"]
    missing = [label for label, value in numbers_present(summary, results) if value is None]
    check("every part produced its numbers", not missing, f"missing: {missing}")
    check("six claims, each decided with evidence", len(summary["claims"]) == 6 and
          all(isinstance(c["held"], bool) and c["evidence"] for c in summary["claims"]))
    with open(os.path.join(work, "results.md")) as f:
        markdown = f.read()
    check("results.md holds the claims and every method", "## Claims" in markdown and
          all(name in markdown for name in ("LoRA", "rsLoRA", "MoLoRA", "HydraLoRA", "SMoRA", "ReMix", "top-k")))

    # The test split is disjoint from training and validation (an independent look at the files).
    data = os.path.join(work, "data")
    seen = {row["prompt"] for split in ("train", "validation") for row in lines(os.path.join(data, f"{split}.jsonl"))}
    corpus = [row["text"] for row in lines(os.path.join(data, "corpus.jsonl"))]
    leaked = [row["question"] for task in ("arithmetic", "lists", "facts")
              for row in lines(os.path.join(data, f"test_{task}.jsonl"))
              if f"Question: {row['question']}\nAnswer:" in seen]
    # The corpus may hold a test problem only in another form: an arithmetic story without its question,
    # a list transform as a sentence holding both the test list and its answer.
    stories = set(corpus)
    leaked += [row["question"] for row in lines(os.path.join(data, "test_arithmetic.jsonl"))
               if row["question"].rsplit(" How many", 1)[0] in stories]
    for row in lines(os.path.join(data, "test_lists.jsonl")):
        op, argument = row["question"].split("(", 1)[0], row["question"].split("(", 1)[1].rsplit(")", 1)[0]
        leaked += [row["question"] for line in corpus if argument in line and f" {row['answer']}" in
                   line.replace(argument, "", 1) and op_word(op) in line]
    check("no test problem in training, validation or the base corpus", not leaked, str(leaked[:3]))

    # Resumable: a second invocation finds every run done and trains nothing.
    started = time.time()
    again = subprocess.run(command, capture_output=True, text=True)
    check("a second run redoes nothing", again.returncode == 0 and not re.search(r"run \d+ of", again.stdout),
          f"{time.time() - started:.0f} s; {again.stdout[-300:]}")

    # The page: renders without errors, and each number it shows is the one in results.json.
    page = os.path.join(work, "results.html")
    rendered = check_report(page, os.path.join(work, "browser"), check, window_size=(1200, 3600),
                            expect_texts=("ReMix reproduction suite", "Claims", "Quick slice"))
    shown = re.findall(r'<span data-key="([^"]+)">([^<]*)</span>', rendered["dom"])
    wrong = []
    for key, text in shown:
        value = document
        for part in json.loads(html.unescape(key)):
            value = value[part]
        if value is None or abs(float(text) - 100 * value) > 0.051:
            wrong.append(f"{html.unescape(key)}: page {text}, json {value}")
    check("page numbers equal results.json", len(shown) >= len(METHODS) * len(TASKS) and not wrong,
          f"{len(shown)} numbers; " + "; ".join(wrong[:5]))
    held = dict(re.findall(r'<tr data-claim="([^"]+)">.*?data-held="(true|false)"', rendered["dom"], re.S))
    check("page claims equal results.json", held == {c["id"]: str(c["held"]).lower() for c in summary["claims"]},
          str(held))
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
