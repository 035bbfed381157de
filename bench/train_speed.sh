#!/usr/bin/env bash
# remora's training step and decode loop against an idiomatic PyTorch reference of the same work
# (bench/reference_step.py, Debian's python3-torch on the same LibTorch), side by side in one run:
# input tokens/s, the fraction of the bf16 GEMM throughput `remora bench` measures (remora's, and from
# it the reference's), peak resident memory, and ReMix's cost per routed sample at M = 8 against M = 2
# (with the step split into a fixed and a per-sample part). Prints Markdown tables.
#   bash bench/train_speed.sh [build-dir]     (after scripts/setup.sh; ~9 minutes on 2 cores)
# THREADS (default 2), STEPS (timed steps at the first shape, default 10).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
remora="${1:-$root/build}/src/remora"
python=/usr/bin/python3
threads="${THREADS:-2}" steps="${STEPS:-10}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Text rows cut from the project's sources: real text, long enough to fill 512-token rows.
sources=("$root"/README.md "$root"/src/*/*.h "$root"/src/*/*.cpp "$root"/tests/unit/*.cpp)
"$python" "$root/bench/text_rows.py" 2400 "${sources[@]}" > "$work/text.jsonl"
"$remora" train-tokenizer --corpus "$work/text.jsonl" --vocab-size 8192 --out "$work/tokenizer" > /dev/null
# Rows of 2048 tokens for activation checkpointing.
"$python" "$root/bench/text_rows.py" 12000 "${sources[@]}" > "$work/long.jsonl"

# model NAME HIDDEN LAYERS FFN HEADS KV_HEADS VOCAB (the vocabulary past the tokenizer's stays unused)
model() {
  "$remora" init-model --arch llama --preset small --set hidden_size="$2" --set num_hidden_layers="$3" \
    --set intermediate_size="$4" --set num_attention_heads="$5" --set num_key_value_heads="$6" --set vocab_size="$7" \
    --tokenizer "$work/tokenizer" --out "$work/$1" > /dev/null
}
model first 512 4 1408 8 4 8192
model second 1024 8 2816 16 8 32000

declare -A shape=([first]="--hidden 512 --layers 4 --ffn 1408 --heads 8 --kv-heads 4 --vocab 8192 --tokens 256"
                  [second]="--hidden 1024 --layers 8 --ffn 2816 --heads 16 --kv-heads 8 --vocab 32000 --tokens 512")
declare -A rows=([first]=256 [second]=512)
declare -A recipe=([remix]=remix [lora]=lora [topk]=topk [smora]=smora)
declare -A sizes=([remix]="--r 8 --experts 8 --k 2" [lora]="--r 8" [topk]="--r 8 --experts 8 --k 2" [smora]="--r 64 --k 8")

# tag LABEL SIDE: the JSON result on stdin, labelled (and on stderr as it comes).
tag() {
  "$python" -c 'import json,sys; r=json.load(sys.stdin); r["label"], r["side"] = sys.argv[1:3]
print(json.dumps(r)); print(json.dumps(r), file=sys.stderr)' "$1" "$2"
}

# run LABEL METHOD SHAPE SAMPLES STEPS [ENV]: one remora and one reference measurement, as JSON lines;
# with ENV (the reference's environment) the reference alone.
run() {
  local label="$1" method="$2" at="$3" samples="$4" n="$5" remix=()
  [ "$method" != remix ] || remix=(train.samples="$samples")
  echo "measuring $label" >&2
  [ -n "${6:-}" ] || "$remora" bench --threads "$threads" --recipe "$root/configs/${recipe[$method]}.yaml" --steps "$n" \
    model.path="$work/$at" data.train="$work/text.jsonl" data.max_seq_len="${rows[$at]}" train.batch_size=2 \
    "${remix[@]}" adapter.target_modules=all-linear 'adapter.method_pattern={}' 2>/dev/null |
    tail -1 | tag "$label" remora
  # shellcheck disable=SC2086
  env ${6:-} "$python" "$root/bench/reference_step.py" train --method "$method" ${shape[$at]} ${sizes[$method]} \
    --batch 2 --samples "$samples" --steps "$n" --threads "$threads" |
    tag "$label" reference
}

# checkpointing LABEL true|false: remora alone, ReMix M 4 at the first shape on one input of 2048 tokens.
checkpointing() {
  echo "measuring $1" >&2
  "$remora" bench --threads "$threads" --recipe "$root/configs/remix.yaml" --steps 2 model.path="$work/first" \
    data.train="$work/long.jsonl" data.max_seq_len=2048 train.batch_size=1 train.samples=4 \
    adapter.target_modules=all-linear train.activation_checkpointing="$2" 2>/dev/null |
    tail -1 | tag "$1" remora
}

{
  checkpointing "ReMix, M 4, batch 1 x 2048 tokens" false
  checkpointing "ReMix, M 4, batch 1 x 2048 tokens, activation checkpointing" true
  run "ReMix, M 4" remix first 4 "$steps"
  run "ReMix, M 2" remix first 2 "$steps"
  run "ReMix, M 8" remix first 8 "$steps"
  run "LoRA" lora first 1 "$steps"
  run "top-k (MixLoRA)" topk first 1 "$steps"
  run "SMoRA" smora first 1 "$steps"
  run "ReMix, M 4, second shape" remix second 4 3
  # The reference again with the allocator remora links and its settings (src/cli/allocator.cpp):
  # what the allocator alone is worth, so that the table does not credit it to anything else.
  run "ReMix, M 4: the reference with remora's allocator" remix first 4 "$steps" \
    "LD_PRELOAD=$(/sbin/ldconfig -p | awk '/libjemalloc.so.2 .*x86-64/ {print $NF; exit}') MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1"
  # ReMix's cost per routed sample, M 8 against M 2: three alternating pairs of short runs on each
  # side, the best of each kept (the machine's drift between two single runs decided it before).
  for try in 1 2 3; do
    for samples in 2 8; do run "per-sample try $try, M $samples" remix first "$samples" 4; done
  done
} > "$work/results.jsonl"

# Decode: batch 1 and 8 after a 16-token prompt, 32 new tokens, on the small and base presets.
for preset in small base; do
  "$remora" init-model --arch llama --preset "$preset" --out "$work/$preset" > /dev/null
  for batch in 1 8; do
    echo "measuring decode $preset batch $batch" >&2
    "$remora" bench --threads "$threads" --model "$work/$preset" --batch "$batch" --tokens 16 --new-tokens 32 2>/dev/null |
      tail -1 | tag "decode $preset, batch $batch" remora
    "$python" "$root/bench/reference_step.py" decode --config "$work/$preset/config.json" --batch "$batch" \
      --new-tokens 32 --threads "$threads" |
      tag "decode $preset, batch $batch" reference
  done
done >> "$work/results.jsonl"

"$python" - "$work/results.jsonl" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["label"], {})[r["side"]] = r
gemm = next(r["remora"]["gemm_bf16_gflops"] for r in rows.values() if "remora" in r)
print(f"bf16 GEMM throughput (remora bench, 1024^3): {gemm:.0f} GFLOP/s\n")
# Both sides do the same model FLOPs per input token, so the reference's share of the GEMM throughput
# follows from remora's; the speed-up any implementation could reach here is 1 / that share.
def reference_share(mine, ref):
    return mine["train_gemm_fraction"] * ref["input_tokens_per_second"] / mine["train_tokens_per_second"]
print("| step | remora tokens/s | reference tokens/s | speed-up | remora % of GEMM | reference % of GEMM | remora peak MiB | reference peak MiB | memory ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for label, r in rows.items():
    if label.startswith("decode") or label.startswith("per-sample"):
        continue
    ref = r.get("reference")
    if ref is None:  # remora alone (activation checkpointing)
        mine = r["remora"]
        print(f"| {label} | {mine['train_tokens_per_second']:.0f} | | | {100 * mine['train_gemm_fraction']:.0f}% | "
              f"| {mine['peak_resident_mib']:.0f} | | |")
        continue
    if "remora" not in r:  # the reference alone (allocator row), against remora's row of the same step
        base = rows["ReMix, M 4"]["remora"]
        print(f"| {label} | | {ref['input_tokens_per_second']:.0f} | {base['train_tokens_per_second'] / ref['input_tokens_per_second']:.2f}x "
              f"| | {100 * reference_share(base, ref):.0f}% | | {ref['peak_resident_mib']:.0f} "
              f"| {base['peak_resident_mib'] / ref['peak_resident_mib']:.2f} |")
        continue
    mine = r["remora"]
    print(f"| {label} | {mine['train_tokens_per_second']:.0f} | {ref['input_tokens_per_second']:.0f} "
          f"| {mine['train_tokens_per_second'] / ref['input_tokens_per_second']:.2f}x | {100 * mine['train_gemm_fraction']:.0f}% "
          f"| {100 * reference_share(mine, ref):.0f}% | {mine['peak_resident_mib']:.0f} | {ref['peak_resident_mib']:.0f} | {mine['peak_resident_mib'] / ref['peak_resident_mib']:.2f} |")
def best_rates(side, key):  # input tokens/s at M = 2 and M = 8, the best of three alternating runs each
    return {m: max(r[side][key] for label, r in rows.items() if label.startswith("per-sample") and label.endswith(f"M {m}"))
            for m in (2, 8)}
sides = {"remora": best_rates("remora", "train_tokens_per_second"),
         "reference": best_rates("reference", "input_tokens_per_second")}
# Seconds per routed sample at M = 8 over M = 2, and the step split into fixed + M x per-sample seconds.
print(f"\nReMix cost per routed sample, M 8 / M 2 (best of three alternating runs each): "
      + ", ".join(f"{side} {(2 * best[2]) / (8 * best[8]):.2f}" for side, best in sides.items()))
for side, best in sides.items():
    sample = (1 / best[8] - 1 / best[2]) / 6
    fixed = 1 / best[2] - 2 * sample
    print(f"  {side}: {1e3 * fixed:.2f} ms fixed + {1e3 * sample:.2f} ms per routed sample, per input token")
print()
print("| decode | remora tokens/s | reference tokens/s | speed-up |")
print("|---|---|---|---|")
for label, r in rows.items():
    if label.startswith("decode"):
        mine, ref = r["remora"]["decode_tokens_per_second"], r["reference"]["decode_tokens_per_second"]
        print(f"| {label[7:]} | {mine:.1f} | {ref:.1f} | {mine / ref:.2f}x |")
EOF
