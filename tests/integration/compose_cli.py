#!/usr/bin/python3
"""remora compose end to end on the bundled two-task data: a random tiny model with its own tokenizer,
two LoRA folders of different ranks and targets; retrieval routing sends each task's prompts to that
task's LoRA (>= 90%), a composed LoRA-Flow adapter trains with its experts frozen (only its gates
change), and bad arguments are one-line errors that write nothing."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import safetensors_py  # noqa: E402
sys.path.insert(0, HERE)
from checks import Checks, remora_and_fresh_work, run  # noqa: E402

DATA = {"colors": os.path.join(ROOT, "data", "colors.jsonl"), "shapes": os.path.join(ROOT, "data", "shapes.jsonl")}


def fails(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    return result.returncode != 0 and len(lines) == 1, result.stderr.strip()


def main():
    args = remora_and_fresh_work()
    remora = [args.remora, "--threads", "2"]
    check = Checks()
    w = lambda *p: os.path.join(args.work, *p)  # noqa: E731

    run(remora + ["train-tokenizer", "--corpus", DATA["colors"], "--corpus", DATA["shapes"], "--vocab-size", "400",
                  "--out", w("tok")])
    run(remora + ["init-model", "--preset", "tiny", "--tokenizer", w("tok"), "--out", w("model"), "--seed", "1"])
    run(remora + ["init-adapter", "--model", w("model"), "--method", "lora", "--r", "4", "--target", "all-linear",
                  "--init-b-std", "0.02", "--out", w("colors")])
    run(remora + ["init-adapter", "--model", w("model"), "--method", "rslora", "--r", "2", "--target", "q_proj,v_proj",
                  "--init-b-std", "0.02", "--seed", "4", "--out", w("shapes")])
    experts = ["--expert", f"colors={w('colors')}", "--expert", f"shapes={w('shapes')}"]

    # Retrieval: each task's prompts to its own LoRA.
    run(remora + ["compose", "--model", w("model")] + experts + ["--router", "retrieval", "--top-k", "1",
                  "--expert-data", f"colors={DATA['colors']}", "--expert-data", f"shapes={DATA['shapes']}",
                  "--out", w("retrieval")])
    right = total = 0
    for expert, task in enumerate(("colors", "shapes")):
        run(remora + ["routing", "--model", w("model"), "--data", DATA[task], "--adapter", w("retrieval"),
                      "--json", w(f"routing_{task}.json")])
        with open(w(f"routing_{task}.json")) as f:
            sites = json.load(f)["adapters"][0]["sites"]
        site = sites[0]
        right += site["load"][expert] * site["tokens"]
        total += site["tokens"]
        same = all(s["load"] == site["load"] for s in sites)
        check(f"retrieval decides once per {task} prompt for every block", same, f"{len(sites)} routers")
    check("retrieval sends >= 90% of each task's prompts to that task's LoRA", right / total >= 0.9,
          f"{right / total:.1%} of {int(total)} prompts")

    # LoRA-Flow over the two LoRAs, trained on one task with the experts frozen.
    run(remora + ["compose", "--model", w("model")] + experts + ["--router", "loraflow", "--out", w("flow")])
    with open(w("recipe.yaml"), "w") as f:
        f.write(f"model:\n  path: {w('model')}\n  adapter: {w('flow')}\n  dtype: float32\n"
                f"data:\n  train: {DATA['colors']}\n  max_seq_len: 64\n"
                f"train:\n  steps: 6\n  batch_size: 4\noptim:\n  lr: 1.0e-2\n"
                f"output:\n  dir: {w('flow_run')}\n  checkpoint_every: 0\neval:\n  every: 0\n")
    run(remora + ["train", w("recipe.yaml")])
    before = safetensors_py.load(w("flow", "adapter_model.safetensors"))
    after = safetensors_py.load(w("flow_run", "adapter", "adapter_model.safetensors"))
    factors = [k for k in before if ".lora_" in k]
    gates = [k for k in before if ".router." in k]
    check("training a composed adapter leaves the experts' factors as they were",
          factors and all((before[k] == after[k]).all() for k in factors), f"{len(factors)} factor tensors")
    check("and trains its LoRA-Flow gates", gates and all(not (before[k] == after[k]).all() for k in gates),
          f"{len(gates)} gate tensors")
    # A recipe's adapter.* keys override the composed adapter's config; a key that cannot act is refused.
    ok, err = fails(remora + ["train", w("recipe.yaml"), "adapter.retrieval_layer=1", f"output.dir={w('never')}"])
    check("an adapter.* key that does not act on the composed method is refused",
          ok and "retrieval_layer has no effect" in err and not os.path.exists(w("never")), err)

    # Arguments that cannot work: one line, nothing written.
    cases = [
        ("output inside an expert folder", ["--router", "molora", "--out", w("colors", "inside")], "--out"),
        ("retrieval without an expert's data", ["--router", "retrieval", "--expert-data", f"colors={DATA['colors']}",
                                                "--out", w("bad")], "needs --expert-data shapes=FILE"),
        ("data for an unknown expert", ["--router", "retrieval", "--expert-data", f"circles={DATA['colors']}",
                                        "--out", w("bad")], "no --expert is named 'circles'"),
        ("top-k above the experts", ["--router", "topk", "--top-k", "3", "--out", w("bad")], "top_k (3)"),
        ("a composed adapter as an expert", ["--expert", f"flow={w('flow')}", "--router", "molora", "--out", w("bad")],
         "compose takes plain LoRA or rsLoRA folders"),
    ]
    for label, extra, expected in cases:
        ok, err = fails(remora + ["compose", "--model", w("model")] + experts + extra)
        check(f"compose refuses {label}", ok and expected in err and not os.path.exists(w("bad"))
              and not os.path.exists(w("colors", "inside")), err)
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
