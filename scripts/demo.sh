#!/usr/bin/env bash
# The main job on the embedded default: set up, build a tiny model with its own tokenizer, pretrain it
# on the bundled shapes data, fine-tune it with ReMix on the bundled colours data, and show what it learned.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
remora="${REMORA_BUILD_DIR:-$root/build}/src/remora"
cd "$root"
mkdir -p demo runs

echo "== 1. a 1024-token byte-level BPE tokenizer and a random 3.5M-parameter Llama-shaped model"
"$remora" train-tokenizer --corpus data/shapes.jsonl data/colors.jsonl README.md --vocab-size 1024 \
  --out demo/tokenizer --overwrite
"$remora" init-model --arch llama --preset tiny --tokenizer demo/tokenizer --out demo/model --overwrite

echo "== 2. pretrain every weight on the shapes of 24 objects (configs/full.yaml)"
"$remora" train configs/full.yaml output.overwrite=true log.every=100

echo "== 3. ReMix fine-tune on their colours: 8 LoRAs per FFN, 2 active, RLOO over 4 samples (configs/remix.yaml)"
"$remora" train configs/remix.yaml output.overwrite=true log.every=100
"$remora" inspect runs/pretrain/model --adapter runs/remix/adapter

echo "== 4. what it learned: 'What color is the X?' for all 24 objects, greedy"
/usr/bin/python3 - "$remora" <<'PY'
import json, subprocess, sys
sys.path.insert(0, "scripts")
from make_demo_data import OBJECTS, COLORS
prompts = [f"### Instruction:\nWhat color is the {o}?\n\n### Response:\n" for o in OBJECTS]
def answers(*adapter):
    argv = [sys.argv[1], "generate", "--model", "runs/pretrain/model", *adapter, "--max-new-tokens", "10"]
    for p in prompts: argv += ["--prompt", p]
    return [json.loads(line).strip() for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()]
base, tuned = answers(), answers("--adapter", "runs/remix/adapter")
right = lambda said: sum(f"The {o} is {c}." == s for o, c, s in zip(OBJECTS, COLORS, said))
for o, c, b, t in list(zip(OBJECTS, COLORS, base, tuned))[:6]:
    print(f"  {o:9} ({c:6})  base: {b:28} ReMix: {t}")
print(f"  ... exact answers: base {right(base)}/24, after ReMix {right(tuned)}/24")
steps = [json.loads(l) for l in open("runs/remix/metrics.jsonl")]
routed = [s for s in steps if "routing" in s][-1]
for layer in routed["routing"]:
    load = " ".join(f"{x:.2f}" for x in layer["load"])
    print(f"  {layer['site']}: ESS {layer['mean_ess']:.2f} (k = 2 by construction), expert load {load}")
PY
