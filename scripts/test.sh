#!/usr/bin/env bash
# Sets remora up (scripts/setup.sh) and runs the whole test suite: unit tests and end-to-end checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
ctest --test-dir "${REMORA_BUILD_DIR:-$root/build}" --output-on-failure -j 2
