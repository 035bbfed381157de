#!/usr/bin/env bash
# Composition study on the bundled tasks: a LoRA trained on the colours data, one on the shapes data
# (each from the demo's base), one trained on both (the multi-task baseline), and the two single-task
# LoRAs composed by remora compose with every router (retrieval untrained; MoLE-style dense gate,
# LoRA-Flow, top-1, ReMix top-1 per token and per sequence trained on the mixed data, experts frozen). Prints exact
# match on the 24 colour and the 24 shape questions per seed, and how retrieval routed them.
# Usage: bash bench/compose_study.sh [build-dir]   (SEEDS="0 1 2", STEPS=300 LoRA steps, ROUTER_STEPS=200;
# runs scripts/demo.sh first if its base is missing; finished runs are not redone)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
remora=("${1:-$root/build}/src/remora" --threads 2)
cd "$root"
[ -d runs/pretrain/model ] || bash scripts/demo.sh
out=runs/compose_study
seeds=${SEEDS:-0 1 2}
mkdir -p "$out"
base=runs/pretrain/model

/usr/bin/python3 - "$out" <<'PY'
import json, random, sys
sys.path.insert(0, "scripts")
from make_demo_data import OBJECTS, COLORS, SHAPES
out = sys.argv[1]
for attribute, values in (("color", COLORS), ("shape", SHAPES)):
    with open(f"{out}/{attribute}_questions.jsonl", "w") as f:
        for o, v in zip(OBJECTS, values):
            f.write(json.dumps({"instruction": f"What {attribute} is the {o}?", "output": f"The {o} is {v}."}) + "\n")
lines = open("data/colors.jsonl").readlines() + open("data/shapes.jsonl").readlines()
random.Random(0).shuffle(lines)
open(f"{out}/mixed.jsonl", "w").writelines(lines)
PY
cat > "$out/router.yaml" <<YAML
# Trains a composed adapter's routers (model.adapter, experts frozen) on both tasks.
model:
  path: $base
data:
  train: $out/mixed.jsonl
  max_seq_len: 128
train:
  steps: ${ROUTER_STEPS:-200}
  batch_size: 8
optim:
  lr: 3.0e-3
schedule:
  type: cosine
  warmup_steps: 10
output:
  checkpoint_every: 0
log:
  every: 50
eval:
  every: 0
YAML

common=(model.path="$base" output.overwrite=true output.checkpoint_every=0 eval.every=0 log.every=50 threads=2)
evaluate() {  # run-folder adapter-folder
  for attribute in color shape; do
    [ -f "$1/answers_$attribute.jsonl" ] && continue
    "${remora[@]}" eval --model "$base" --adapter "$2" --task generate --data "$out/${attribute}_questions.jsonl" \
      --max-new-tokens 12 --samples "$1/answers_$attribute.tmp" > /dev/null
    mv "$1/answers_$attribute.tmp" "$1/answers_$attribute.jsonl"
  done
}
for seed in $seeds; do
  s="$out/seed$seed"
  for task in colors shapes mixed; do
    data="data/$task.jsonl"
    [ "$task" = mixed ] && data="$out/mixed.jsonl"
    if [ ! -f "$s/lora_$task/adapter/adapter_config.json" ]; then
      echo "== seed $seed: LoRA on $task"
      "${remora[@]}" train configs/lora.yaml "${common[@]}" data.train="$data" train.steps="${STEPS:-300}" \
        train.seed="$seed" output.dir="$s/lora_$task" | tail -1
    fi
    evaluate "$s/lora_$task" "$s/lora_$task/adapter"
  done
  experts=(--expert colors="$s/lora_colors/adapter" --expert shapes="$s/lora_shapes/adapter")
  mkdir -p "$s/retrieval"
  [ -f "$s/retrieval/adapter/adapter_config.json" ] || "${remora[@]}" compose --model "$base" "${experts[@]}" \
    --router retrieval --top-k 1 --expert-data colors=data/colors.jsonl --expert-data shapes=data/shapes.jsonl \
    --out "$s/retrieval/adapter" --overwrite
  evaluate "$s/retrieval" "$s/retrieval/adapter"
  for variant in molora loraflow topk remix remix_sequence; do
    run="$s/compose_$variant"
    router=${variant%_sequence}
    if [ ! -f "$run/adapter/adapter_config.json" ]; then
      echo "== seed $seed: $variant over the two LoRAs"
      "${remora[@]}" compose --model "$base" "${experts[@]}" --router "$router" --top-k 1 --seed "$seed" \
        --out "$s/composed_$variant" --overwrite > /dev/null
      extra=()
      [ "$router" = remix ] && extra=(train.samples=4)
      [ "$variant" = remix_sequence ] && extra+=(adapter.routing=sequence)
      "${remora[@]}" train "$out/router.yaml" model.adapter="$s/composed_$variant" train.seed="$seed" \
        output.dir="$run" output.overwrite=true threads=2 "${extra[@]}" | tail -1
    fi
    evaluate "$run" "$run/adapter"
  done
  for attribute in color shape; do  # where retrieval sent each task's questions
    "${remora[@]}" routing --model "$base" --data "$out/${attribute}_questions.jsonl" --adapter "$s/retrieval/adapter" \
      --json "$s/retrieval/routing_$attribute.json" > /dev/null
  done
done

/usr/bin/python3 - "$out" "$seeds" <<'PY'
import json, os, statistics, sys
out, seeds = sys.argv[1], sys.argv[2].split()
def score(run, attribute):
    with open(os.path.join(run, f"answers_{attribute}.jsonl")) as f:
        hits = [json.loads(line)["exact_match"]["none"] for line in f]
    return sum(hits) / len(hits)
rows = [("LoRA on colours", "lora_colors"), ("LoRA on shapes", "lora_shapes"), ("LoRA on both (multi-task)", "lora_mixed"),
        ("retrieval, top-1 (untrained)", "retrieval"), ("MoLE-style dense gate", "compose_molora"),
        ("LoRA-Flow gate", "compose_loraflow"), ("top-1 softmax router", "compose_topk"), ("ReMix top-1 (RLOO)", "compose_remix"),
        ("ReMix top-1, sequence routing", "compose_remix_sequence")]
print(f"{'adapter':30} {'colours':>18} {'shapes':>18} {'both (mean)':>12}")
for label, name in rows:
    colours = [score(f"{out}/seed{s}/{name}", "color") for s in seeds]
    shapes = [score(f"{out}/seed{s}/{name}", "shape") for s in seeds]
    both = statistics.mean(colours + shapes)
    print(f"{label:30} {' / '.join(f'{x:.2f}' for x in colours):>18} {' / '.join(f'{x:.2f}' for x in shapes):>18} {both:12.2f}")
right = total = 0
for s in seeds:
    for attribute, expert in (("color", 0), ("shape", 1)):
        with open(f"{out}/seed{s}/retrieval/routing_{attribute}.json") as f:
            site = json.load(f)["adapters"][0]["sites"][0]
        right += site["load"][expert] * site["tokens"]
        total += site["tokens"]
print(f"retrieval sent {right / total:.1%} of the questions to their task's LoRA ({int(total)} questions over the seeds)")
PY
