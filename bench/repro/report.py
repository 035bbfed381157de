"""Aggregates the suite's runs (mean ± standard error over seeds), decides each claim with criteria
fixed before the runs, and writes results.json, results.md and the self-contained results.html."""
import json
import math
import os
import statistics

import plan

PLACEHOLDER = '"__REMORA_REPORT_DATA__"'
TASKS = [("arithmetic", "arithmetic (GSM8K-style, strict EM)"), ("lists", "lists (HumanEval-style, EM)"),
         ("facts", "facts (ARC-style, acc)")]
NAMES = {"lora": "LoRA", "rslora": "rsLoRA", "molora": "MoLoRA", "topk": "MixLoRA top-k", "hydra": "HydraLoRA",
         "smora": "SMoRA", "remix": "ReMix"}


def mean_se(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "se": None, "n": 0}
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return {"mean": statistics.mean(values), "se": se, "n": len(values)}


def average(scores):
    """The suite's headline number: the mean of the three tasks' scores (Table 1's 'avg')."""
    return sum(scores[t] for t, _ in TASKS) / len(TASKS)


def summarise(runs):
    out = {t: mean_se([r["scores"][t] for r in runs]) for t, _ in TASKS}
    out["facts_norm"] = mean_se([r["scores"]["facts_norm"] for r in runs])
    out["avg"] = mean_se([average(r["scores"]) for r in runs])
    return out


def ess_curve(runs):
    """Mean over seeds of the per-step mean ESS over routers (None where not logged)."""
    steps = runs[0]["curve"]["steps"]
    curve = []
    for i in range(len(steps)):
        values = [r["curve"]["mean_ess"][i] for r in runs if i < len(r["curve"]["mean_ess"])]
        values = [v for v in values if v is not None]
        curve.append(statistics.mean(values) if values else None)
    return {"steps": steps, "mean_ess": curve}


def fmt(stat, scale=100):
    if stat["mean"] is None:
        return "-"
    text = f"{scale * stat['mean']:.1f}"
    return text + (f" ± {scale * stat['se']:.1f}" if stat["se"] is not None else "")


def better(a, b):
    """'clearly' when the means differ by more than twice their combined standard error."""
    if a["mean"] is None or b["mean"] is None:
        return False, False
    spread = math.hypot(a["se"] or 0, b["se"] or 0)
    return a["mean"] > b["mean"], a["mean"] - b["mean"] > 2 * spread and spread > 0


def claims(summary):
    """Each claim with the numbers that decide it; criteria as written here, whatever the outcome."""
    m, s = summary["methods"], summary["studies"]
    out = []

    topk, remix = summary["ess"]["topk"]["mean_ess"], summary["ess"]["remix"]["mean_ess"]
    topk = [v for v in topk if v is not None]
    remix = [v for v in remix if v is not None]
    if topk and remix:
        first, last = topk[0], topk[-1]
        out.append({"id": "a", "claim": "a learned top-2 router collapses: its mean effective support falls from k = 2 "
                    "towards 1 during training, while ReMix keeps exactly k",
                    "held": last <= 1.5 and all(abs(v - 2) < 1e-6 for v in remix),
                    "evidence": f"top-k mean ESS {first:.2f} at the first logged step, {last:.2f} at the last "
                                f"(criterion: at most 1.5); ReMix {min(remix):.2f}-{max(remix):.2f}"})
    wins = {b: better(m["remix"]["avg"], m[b]["avg"]) for b in ("lora", "rslora", "topk", "hydra")}
    out.append({"id": "b", "claim": "ReMix beats LoRA, rsLoRA, MixLoRA-style top-k and HydraLoRA at a similar "
                "activated-parameter budget (average over the three tasks)",
                "held": all(w for w, _ in wins.values()),
                "evidence": "; ".join(f"ReMix {fmt(m['remix']['avg'])} vs {NAMES[b]} {fmt(m[b]['avg'])}"
                                      f"{' (clearly)' if clear else ''}" for b, (w, clear) in wins.items())})
    for key, label, paper in (("k", "more active experts help (k = 1, 2, 3, 4 of n = 8)", plan.PAPER_K),
                              ("M", "more RLOO samples help (M = 2, 4, 8)", plan.PAPER_M)):
        values = sorted(s[key], key=float)
        means = [s[key][v]["avg"]["mean"] for v in values]
        out.append({"id": "c" if key == "k" else "d", "claim": label,
                    "held": all(a < b for a, b in zip(means, means[1:])),
                    "evidence": ", ".join(f"{key} = {v}: {fmt(s[key][v]['avg'])}" for v in values) +
                                " (criterion: the average rises at every step; paper: " +
                                ", ".join(f"{p}" for k, p in paper.items() if str(k) in values) + ")"})
    rloo = s["objective"]["rloo"]["avg"]
    checks = {"RLOO vs REINFORCE without a baseline": better(rloo, s["objective"]["reinforce"]["avg"]),
              "RLOO vs a frozen random router": better(rloo, s["objective"]["frozen"]["avg"]),
              "top-k inference vs sampling at inference": better(s["inference"]["top-k"]["avg"],
                                                                 s["inference"]["sampled"]["avg"])}
    out.append({"id": "e", "claim": "removing RLOO (no baseline, or no router training) or top-k inference hurts",
                "held": all(w for w, _ in checks.values()),
                "evidence": f"RLOO {fmt(rloo)}, REINFORCE {fmt(s['objective']['reinforce']['avg'])}, frozen "
                            f"{fmt(s['objective']['frozen']['avg'])}; top-k inference {fmt(s['inference']['top-k']['avg'])}, "
                            f"sampled {fmt(s['inference']['sampled']['avg'])}"})
    smora = {b: better(m["smora"]["avg"], m[b]["avg"]) for b in ("lora", "topk")}
    out.append({"id": "smora", "claim": "SMoRA (rank-wise experts) beats LoRA and a MoE-LoRA at equal activated ranks",
                "held": all(w for w, _ in smora.values()),
                "evidence": "; ".join(f"SMoRA {fmt(m['smora']['avg'])} vs {NAMES[b]} {fmt(m[b]['avg'])}"
                                      for b in smora)})
    return out


def build(results):
    summary = {"methods": {k: summarise(v) for k, v in results["methods"].items()},
               "studies": {study: {value: summarise(runs) for value, runs in values.items()}
                           for study, values in results["studies"].items()},
               "ess": {m: ess_curve(results["methods"][m]) for m in ("topk", "remix")}}
    summary["claims"] = claims(summary)
    return summary


def markdown(results, summary):
    lines = ["# ReMix reproduction suite: results", ""]
    if results["quick"]:
        lines += ["**Quick slice** (a few steps, one seed): checks that every part runs; the numbers mean nothing.", ""]
    scale, data = results["scale"], results["data"]
    lines += [f"{len(scale['seeds'])} seeds per setting, mean ± standard error (in points); {scale['steps']} steps of "
              f"batch 8 per run; base pretrained {scale['base_steps']} steps. Test problems per task: "
              + ", ".join(f"{t} {c['test']}" for t, c in data["problems"].items())
              + ". Produced by `/usr/bin/python3 bench/repro/run.py` (see bench/repro/README.md).", "", "## Claims", "",
              "| claim | held here | evidence |", "|---|---|---|"]
    for c in summary["claims"]:
        lines.append(f"| ({c['id']}) {c['claim']} | {'yes' if c['held'] else '**no**'} | {c['evidence']} |")
    lines += ["", "## Methods at a matched budget (16 active ranks on every FFN projection)", "",
              "| method | " + " | ".join(label for _, label in TASKS) + " | facts acc_norm | avg | lr | activated / trainable |",
              "|---|" + "---|" * (len(TASKS) + 4)]
    base = results["base"]
    lines.append("| base (no adapter) | " + " | ".join(f"{100 * base[t]:.1f}" for t, _ in TASKS) +
                 f" | {100 * base['facts_norm']:.1f} | {100 * average(base):.1f} | - | - |")
    for method in plan.METHOD_ORDER:
        s, b = summary["methods"][method], results["budget"][method]
        lines.append(f"| {NAMES[method]} | " + " | ".join(fmt(s[t]) for t, _ in TASKS) +
                     f" | {fmt(s['facts_norm'])} | {fmt(s['avg'])} | {results['lr'][method]:g} | "
                     f"{b['activated']:,} / {b['trainable']:,} |")
    lines += ["", "Learning rates were picked per method by the final validation loss (validation split) of "
              "seed 0 at each of " + ", ".join(f"{lr:g}" for lr in scale["lrs"]) + ":", "",
              "| method | " + " | ".join(f"lr {lr:g}" for lr in scale["lrs"]) + " |", "|---|" + "---|" * len(scale["lrs"])]
    for method, losses in results["lr_sweep"].items():
        lines.append(f"| {NAMES[method]} | " + " | ".join(
            "diverged" if losses[f"{lr:g}"] is None else f"{losses[f'{lr:g}']:.4f}" for lr in scale["lrs"]) + " |")
    titles = {"k": "ReMix: active experts k (n = 8)", "M": "ReMix: RLOO samples M",
              "objective": "ReMix: router objective", "inference": "ReMix: inference routing",
              "investigation": "ReMix: other settings tried (one change each from the main run)"}
    for study, values in summary["studies"].items():
        lines += ["", f"## {titles.get(study, study)}", "", "| setting | " + " | ".join(l for _, l in TASKS) + " | avg |",
                  "|---|" + "---|" * (len(TASKS) + 1)]
        for value, s in values.items():
            lines.append(f"| {value} | " + " | ".join(fmt(s[t]) for t, _ in TASKS) + f" | {fmt(s['avg'])} |")
    lines += ["", "## Routing on the test mixture (seed 0)", "", "| router | top-k mean ESS | ReMix mean ESS |", "|---|---|---|"]
    for a, b in zip(results["routing"]["topk"], results["routing"]["remix"]):
        lines.append(f"| {a['site']} | {a['mean_ess']:.3f} | {b['mean_ess']:.3f} |")
    return "\n".join(lines) + "\n"


def write(results, out):
    summary = build(results)
    document = {"results": results, "summary": summary}
    text = json.dumps(document, indent=1)
    for name, content in (("results.json", text), ("results.md", markdown(results, summary))):
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            f.write(content)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")) as f:
        template = f.read()
    assert template.count(PLACEHOLDER) == 1, "page.html must hold the placeholder once"
    # Every '<' as \u003c: keeps '</script>' and '<!--' in strings from ending the script element.
    page = template.replace(PLACEHOLDER, json.dumps(document, allow_nan=False).replace("<", "\\u003c"))
    with open(os.path.join(out, "results.html.tmp"), "w") as f:
        f.write(page)
    os.replace(os.path.join(out, "results.html.tmp"), os.path.join(out, "results.html"))
