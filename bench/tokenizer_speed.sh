#!/usr/bin/env bash
# Single-threaded encoding speed (MB/s) of each golden tokenizer family on a mixed text corpus built
# from this repository's sources and docs plus the golden corpus (code, prose, CJK, emoji).
# Usage: bash bench/tokenizer_speed.sh [BUILD_DIR]   (after building; default build/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${REMORA_BUILD_DIR:-$root/build}}"
corpus="$(mktemp)"
trap 'rm -f "$corpus"' EXIT
cat "$root"/README.md "$root"/src/*/*.cpp "$root"/src/*/*.h > "$corpus"
python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$root/tests/tokenizer_golden/corpus.json" >> "$corpus"
echo "corpus: $(wc -c < "$corpus") bytes"
for family in llama3 qwen3 mistral; do
  printf '%-8s ' "$family"
  "$build/src/remora" --threads 1 tokenize --model "$build/tests/tokenizer_golden/$family" --file "$corpus" --bench | head -1
done
