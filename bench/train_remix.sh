#!/usr/bin/env bash
# Training throughput of the ReMix recipe (n 8, k 2, r 8, M 4) on a Llama-shaped model of hidden
# size $HIDDEN (default 768), 256-token text rows, against the machine's bf16 GEMM throughput.
# With NPROC=N, also N single-thread workers (remora launch) against one worker of N threads.
# RECIPE=configs/lora.yaml times another method.
# Usage: bash bench/train_remix.sh [build-dir]   (after scripts/setup.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
remora="${1:-$root/build}/src/remora"
hidden="${HIDDEN:-768}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Text rows cut from the project's sources: real text, enough of it to fill 256-token rows.
/usr/bin/python3 "$root/bench/text_rows.py" 1100 "$root"/README.md "$root"/src/*/*.h "$root"/src/*/*.cpp > "$work/text.jsonl"
"$remora" train-tokenizer --corpus "$work/text.jsonl" --vocab-size 4096 --out "$work/tokenizer" > /dev/null
"$remora" init-model --arch llama --preset small --set hidden_size="$hidden" --set intermediate_size=$((hidden * 8 / 3 / 64 * 64)) \
  --set num_attention_heads=$((hidden / 64)) --set num_key_value_heads=$((hidden / 128)) \
  --tokenizer "$work/tokenizer" --out "$work/model" > /dev/null
"$remora" bench --gemm-size 1024 --recipe "$root/${RECIPE:-configs/remix.yaml}" --steps "${STEPS:-10}" --nproc "${NPROC:-1}" \
  model.path="$work/model" data.train="$work/text.jsonl" data.max_seq_len=256 train.batch_size=4 2>&1 | grep -v '^step '
