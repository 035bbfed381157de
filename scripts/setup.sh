#!/usr/bin/env bash
# Installs every system dependency of remora on Debian 12 (as root) and builds it; safe to run twice.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libgtest-dev libgmock-dev
  python3 python3-torch
  libpcre2-dev libicu-dev xz-utils python3-jinja2
  chromium fonts-dejavu-core fonts-liberation python3-pil
  clang-14 libclang-rt-14-dev libfuzzer-14-dev
  libcpp-httplib-dev libjemalloc-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node.js and npm run the `remora serve` tests with the official OpenAI client. Machines that already
# have them (e.g. from NodeSource) keep theirs: Debian's npm package would conflict with it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The pinned client from the lock file (package-lock.json), once.
if [ ! -f "$root/tests/serve/node_modules/openai/package.json" ]; then
  npm ci --prefix "$root/tests/serve" --no-audit --no-fund --loglevel=error
fi
build="${REMORA_BUILD_DIR:-$root/build}"
build_type="${REMORA_BUILD_TYPE:-Release}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DREMORA_BUILD_TESTS=ON ${REMORA_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
