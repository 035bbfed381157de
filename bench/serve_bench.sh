#!/usr/bin/env bash
# `remora serve` under load: the small preset (32M, bf16) with its own tokenizer and three adapters (LoRA on
# every projection, ReMix 8 experts top-2 on every projection, SMoRA r 64 top-8 on the FFN), clients
# spread over the base and the adapters, streaming 64 sampled tokens each (bench/serve_bench.mjs).
# Usage: bash bench/serve_bench.sh [BUILD_DIR] [--threads N] [--max-num-seqs N] [--padded-attention]
#          [--clients 1,8,32] [--prompt-words N]   (after building; N words of filler before each prompt)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${REMORA_BUILD_DIR:-$root/build}"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then build="$1"; shift; fi
threads=2 seqs=32 clients=1,8,32 words=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --padded-attention) extra+=(--padded-attention); shift ;;
    --threads) threads="$2"; shift 2 ;;
    --max-num-seqs) seqs="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --prompt-words) words="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
remora="$build/src/remora"
work="$(mktemp -d)"
server=""
trap '[ -z "$server" ] || kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
"$remora" train-tokenizer --corpus "$root"/data/*.jsonl "$root"/README.md --vocab-size 1024 --out "$work/tok" > /dev/null
"$remora" init-model --preset small --tokenizer "$work/tok" --out "$work/model" > /dev/null
"$remora" init-adapter --model "$work/model" --method lora --r 16 --target all-linear --init-b-std 0.02 --out "$work/lora" > /dev/null
"$remora" init-adapter --model "$work/model" --method remix --r 8 --experts 8 --top-k 2 --target all-linear \
  --init-b-std 0.02 --out "$work/remix" > /dev/null
"$remora" init-adapter --model "$work/model" --method smora --r 64 --top-k 8 --target gate_proj,up_proj,down_proj \
  --init-b-std 0.02 --out "$work/smora" > /dev/null
"$remora" --threads "$threads" serve --model "$work/model" --served-model-name base --port 0 --max-num-seqs "$seqs" \
  --adapter lora="$work/lora" --adapter remix="$work/remix" --adapter smora="$work/smora" ${extra[@]+"${extra[@]}"} 2> "$work/serve.log" &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.]*:[0-9]*' "$work/serve.log")"
filler=""; [ "$words" = 0 ] || filler="; $words filler words before each prompt"
echo "remora serve, small preset, --threads $threads, --max-num-seqs $seqs ${extra[*]+${extra[*]}}; models base, lora, remix, smora in turn$filler"
node "$root/bench/serve_bench.mjs" --url "$url" --models base,lora,remix,smora --clients "$clients" --requests-per-client 4 \
  --max-tokens 64 --prompt-words "$words"
