#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) into build-fuzz/ and runs each one with a
# seed corpus from the repository's own files, then prints executions, coverage and crashes per target.
#   bash fuzz/run.sh [--seconds N | --runs N] [--seed S] [--jobs J] [--timeout S] [TARGET ...]
# (--runs with --seed is deterministic: the CI smoke runs exactly what was run before it was committed.)
# Exits non-zero if any target crashed (the reproducer is under build-fuzz/findings/TARGET/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${REMORA_FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds=10 runs="" seed=0 jobs=1 timeout=60 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(safetensors shard_index config_json tokenizer_json chat_template jsonl_records recipe_yaml adapter_config)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

mkdir -p "$build"
# Quiet unless it fails (ninja prints compiler errors on stdout).
if ! { cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 &&
       cmake --build "$build" -j "$(nproc)"; } >"$build/build.log" 2>&1; then
  cat "$build/build.log" >&2
  echo "fuzz/run.sh: building the fuzz targets failed" >&2
  exit 1
fi

# Seed corpora: files of each kind that the repository and a toy model already have.
seeds="$build/seeds"
if [ ! -d "$seeds" ]; then
  mkdir -p "$seeds"/{safetensors,shard_index,config_json,tokenizer_json,chat_template,jsonl_records,recipe_yaml,adapter_config}
  remora="${REMORA_BUILD_DIR:-$root/build}/src/remora"
  toy="$build/toy"
  rm -rf "$toy"
  "$remora" train-tokenizer --corpus "$root/data/colors.jsonl" --vocab-size 300 --out "$toy/tok" >/dev/null
  "$remora" init-model --preset toy --tokenizer "$toy/tok" --out "$toy/model" >/dev/null
  for method in lora remix smora; do
    "$remora" init-adapter --model "$toy/model" --method "$method" --r 4 --out "$toy/$method" >/dev/null
    cp "$toy/$method/adapter_config.json" "$seeds/adapter_config/$method.json"
  done
  cp "$toy/lora/adapter_model.safetensors" "$seeds/safetensors/adapter.safetensors"
  cp "$toy/model/config.json" "$seeds/config_json/"
  for preset in tiny small; do
    "$remora" init-model --preset "$preset" --out "$toy/$preset" >/dev/null
    cp "$toy/$preset/config.json" "$seeds/config_json/$preset.json"
  done
  cp "$toy/model/tokenizer.json" "$seeds/tokenizer_json/toy.json"
  printf '{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}' >"$seeds/shard_index/index.json"
  cp "$root"/tests/tokenizer_golden/chat_templates/* "$seeds/chat_template/" 2>/dev/null || true
  split -l 1 "$root/data/colors.jsonl" "$seeds/jsonl_records/colors-"
  ls "$seeds/jsonl_records" | tail -n +25 | sed "s|^|$seeds/jsonl_records/|" | xargs rm -f
  printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]}\n' >"$seeds/jsonl_records/chat"
  printf '{"prompt": "a", "completion": "b"}\n{"text": "plain"}\n' >"$seeds/jsonl_records/pc"
  printf '{"query": "q?", "choices": ["a", "b"], "gold": 1}\n{"input": "x", "target": "y"}\n' >"$seeds/jsonl_records/eval"
  cp "$root"/configs/*.yaml "$seeds/recipe_yaml/"
fi

dict_of() {
  case "$1" in
    recipe_yaml) echo yaml ;;
    chat_template) echo jinja ;;
    *) echo json ;;
  esac
}

printf '%-16s %12s %8s %8s %8s\n' target executions cov features crashes
status=0
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target" findings="$build/findings/$target"
  mkdir -p "$corpus" "$findings"
  limit=(-max_total_time="$seconds")
  [ -z "$runs" ] || limit=(-runs="$runs")
  log="$build/logs/$target.log"
  mkdir -p "$(dirname "$log")"
  set +e
  parallel=()
  rm -f "$build"/fuzz-*.log
  seeding=(-seed="$seed")
  # Parallel jobs log to fuzz-N.log in $build, and the main log repeats each job's log when it ends;
  # a fixed -seed would give every job the same one, so jobs draw their own.
  [ "$jobs" -le 1 ] || parallel=(-jobs="$jobs" -workers="$jobs") seeding=()
  # -timeout is wall-clock: the default 60 s still catches a hang, and a unit of a few seconds under
  # ASan (a 100-message conversation) survives a busy 2-core machine. A longer one lets a campaign be
  # paused (kill -STOP / -CONT) while the machine runs a benchmark.
  (cd "$build" && ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz_$target" "${limit[@]}" "${parallel[@]}" "${seeding[@]}" -rss_limit_mb=4096 -timeout="$timeout" -max_len=65536 \
    -dict="$root/fuzz/dict/$(dict_of "$target").dict" -artifact_prefix="$findings/" -print_final_stats=1 \
    "$corpus" "$seeds/$target" >"$log" 2>&1)
  rc=$?
  set -e
  executions=$( (grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" || true) | awk '{s+=$2} END {print s+0}')
  coverage=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  features=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  # libFuzzer also saves slow-unit-* files there (slow, not wrong; a starved machine makes many).
  crashes=$(find "$findings" -type f ! -name 'slow-unit-*' | wc -l)
  printf '%-16s %12s %8s %8s %8s\n' "$target" "$executions" "${coverage:-?}" "${features:-?}" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "  $target: exit $rc; see $log" >&2
    grep -m3 -E 'ERROR|runtime error|terminate called|deadly signal' "$log" >&2 || true
  fi
done
exit $status
