#!/usr/bin/env bash
# Sets remora up (scripts/setup.sh) and runs the whole test suite: unit tests, end-to-end checks and a
# fuzzing smoke.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
ctest --test-dir "${REMORA_BUILD_DIR:-$root/build}" --output-on-failure -j 2
# A short, deterministic smoke of every libFuzzer target (ASan + UBSan); campaigns: fuzz/run.sh --seconds N
"$root/fuzz/run.sh" --runs 20000 --seed 1
