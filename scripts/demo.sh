#!/usr/bin/env bash
# The main job on the embedded default: set up, build a tiny model with its own tokenizer, pretrain it
# on the bundled shapes data, fine-tune it with ReMix on the bundled colours data, and show what it learned.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
# Two threads and fixed seeds whatever the machine: the same commands then give the same numbers
# on any machine with the same CPU kernels (thread count changes the order of float reductions).
remora=("${REMORA_BUILD_DIR:-$root/build}/src/remora" --threads 2)
cd "$root"
mkdir -p demo runs

echo "== 1. a byte-level BPE tokenizer (up to 1024 tokens) on the pretraining data, and a random Llama-shaped model of about 3.2M parameters"
"${remora[@]}" train-tokenizer --corpus data/shapes.jsonl --vocab-size 1024 \
  --out demo/tokenizer --overwrite
"${remora[@]}" init-model --arch llama --preset tiny --tokenizer demo/tokenizer --out demo/model --overwrite

echo "== 2. pretrain every weight on the shapes of 24 objects (configs/full.yaml)"
"${remora[@]}" train configs/full.yaml output.overwrite=true log.every=100 threads=2

echo "== 3. ReMix fine-tune on their colours: 8 LoRAs per FFN, 2 active, RLOO over 4 samples (configs/remix.yaml)"
"${remora[@]}" train configs/remix.yaml output.overwrite=true log.every=100 threads=2
"${remora[@]}" inspect runs/pretrain/model --adapter runs/remix/adapter

echo "== 4. MixLoRA-style top-k (learned router, renormalised top-2 of 8): same base, data, steps and lr, for comparison"
"${remora[@]}" train configs/topk.yaml model.path=runs/pretrain/model train.steps=500 optim.lr=5.0e-3 output.overwrite=true log.every=25 threads=2

echo "== 5. 'What color is the X?' for all 24 objects, greedy, exact match (remora eval)"
/usr/bin/python3 - <<'PY'
import json, sys
sys.path.insert(0, "scripts")
from make_demo_data import OBJECTS, COLORS
with open("demo/color_questions.jsonl", "w") as f:
    for o, c in zip(OBJECTS, COLORS):
        f.write(json.dumps({"instruction": f"What color is the {o}?", "output": f"The {o} is {c}."}) + "\n")
PY
for run in base topk remix; do
  echo "-- $run"
  adapter=()
  [ "$run" = base ] || adapter=(--adapter "runs/$run/adapter")
  "${remora[@]}" eval --model runs/pretrain/model "${adapter[@]}" --task generate --data demo/color_questions.jsonl \
    --max-new-tokens 12 --samples "demo/answers_$run.jsonl"
done
/usr/bin/python3 - <<'PY'
import json
for run in ("base", "topk", "remix"):
    for sample in [json.loads(line) for line in open(f"demo/answers_{run}.jsonl")][:3]:
        print(f"  {run:6} {sample['reference']:22} -> {sample['output'].strip()}")
PY

echo "== 6. routing report: top-k vs ReMix on the colours data, with their training curves"
"${remora[@]}" routing --model runs/pretrain/model --data data/colors.jsonl \
  --adapter runs/topk/adapter --adapter runs/remix/adapter \
  --metrics runs/topk/metrics.jsonl --metrics runs/remix/metrics.jsonl \
  --json runs/routing.json --html runs/routing.html
echo "open runs/routing.html in a browser (self-contained, no network needed)"
