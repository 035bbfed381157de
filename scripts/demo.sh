#!/usr/bin/env bash
# The main job on the embedded default: set up, make a tiny Llama-shaped model, inspect it, generate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
remora="${REMORA_BUILD_DIR:-$root/build}/src/remora"
demo="$root/demo"
mkdir -p "$demo"

echo "== train-tokenizer: a 1024-token byte-level BPE on the project's docs"
"$remora" train-tokenizer --corpus "$root/README.md" "$root"/src/*/*.h --vocab-size 1024 --out "$demo/tokenizer" --overwrite
echo "== init-model: a random tiny Llama checkpoint in Hugging Face layout, with that tokenizer"
"$remora" init-model --arch llama --preset tiny --out "$demo/model" --overwrite --tokenizer "$demo/tokenizer"
echo "== tokenize"
"$remora" tokenize --model "$demo/model" --text "Fine-tune with LoRA: 12 adapters, 中文, 😀"
echo "== inspect"
"$remora" inspect "$demo/model" --no-tensors
echo "== forward: logits of two rows (padded into one batch) -> $demo/logits.safetensors"
"$remora" forward --model "$demo/model" --ids "1,17,42,7;1,99" --out "$demo/logits.safetensors"
echo "== generate: greedy, then sampled (temperature 0.8, top-p 0.9, seed 1)"
"$remora" generate --model "$demo/model" --ids "1,17,42,7" --max-new-tokens 16
"$remora" generate --model "$demo/model" --ids "1,17,42,7" --max-new-tokens 16 --temperature 0.8 --top-p 0.9 --seed 1
echo "== generate from text: a prompt (streamed) and a chat message through the chat template"
"$remora" generate --model "$demo/model" --prompt "The adapter" --max-new-tokens 16
"$remora" generate --model "$demo/model" --chat "Hello!" --system "Be brief." --max-new-tokens 16 --temperature 0.8 --seed 1
