#!/usr/bin/env bash
# ReMix's training choices on the demo's colours task, 3 seeds each: the default (router reads a
# detached input, routers clipped on their own, RLOO) and one global clip instead, and for reference
# plain LoRA with the same 16 active ranks on the same FFN projections and the MixLoRA-style top-k of
# the demo. Prints exact match over the 24 questions and the mean ratio of router to adapter gradient
# norm (before clipping) over training.
# Usage: bash bench/remix_demo_study.sh [build-dir]   (runs scripts/demo.sh first if its base is missing)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
remora=("${1:-$root/build}/src/remora" --threads 2)
cd "$root"
[ -d runs/pretrain/model ] && [ -f demo/color_questions.jsonl ] || bash scripts/demo.sh
out=runs/study
mkdir -p "$out"

common=(model.path=runs/pretrain/model train.steps=500 optim.lr=5.0e-3 output.overwrite=true
        output.checkpoint_every=0 log.every=10 eval.every=0 threads=2)
declare -A variants=(
  [remix]="configs/remix.yaml"
  [remix_joint_clip]="configs/remix.yaml train.router_clip=joint"
  [lora_r16_ffn]="configs/lora.yaml adapter.r=16 adapter.lora_alpha=16 adapter.target_modules=[gate_proj,up_proj,down_proj]"
  [topk]="configs/topk.yaml"
)
for name in remix remix_joint_clip lora_r16_ffn topk; do
  for seed in 0 1 2; do
    run="$out/${name}_seed$seed"
    if [ ! -f "$run/answers.jsonl" ]; then  # finished runs are not redone
      echo "== $name, seed $seed"
      # shellcheck disable=SC2086
      "${remora[@]}" train ${variants[$name]} "${common[@]}" train.seed="$seed" output.dir="$run" 2>&1 | tail -1
      "${remora[@]}" eval --model runs/pretrain/model --adapter "$run/adapter" --task generate \
        --data demo/color_questions.jsonl --max-new-tokens 12 --samples "$run/answers.jsonl.tmp" > /dev/null
      mv "$run/answers.jsonl.tmp" "$run/answers.jsonl"
    fi
  done
done

/usr/bin/python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
print(f"{'variant':18} {'exact match per seed':24} {'mean':>6} {'router/adapter grad norm':>26}")
for name in ["remix", "remix_joint_clip", "lora_r16_ffn", "topk"]:
    scores, ratios = [], []
    for run in sorted(glob.glob(os.path.join(out, f"{name}_seed*"))):
        with open(os.path.join(run, "answers.jsonl")) as f:
            hits = [json.loads(line)["exact_match"]["none"] for line in f]
        scores.append(sum(hits) / len(hits))
        with open(os.path.join(run, "metrics.jsonl")) as f:
            for r in map(json.loads, f):
                if r.get("adapter_grad_norm"):
                    ratios.append(r["router_grad_norm"] / r["adapter_grad_norm"])
    ratio = f"{statistics.mean(ratios):.2f}" if ratios else "-"
    print(f"{name:18} {' / '.join(f'{s:.2f}' for s in scores):24} {statistics.mean(scores):6.2f} {ratio:>26}")
PY
