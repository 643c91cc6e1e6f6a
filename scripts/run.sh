#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs switchboard on
# 127.0.0.1:8080 with its embedded Redis. Extra arguments go to switchboard
# (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v npm >/dev/null 2>&1 && scripts/build-dashboard.sh >/dev/null || echo "npm not found: /dashboard/ will lack its charts" >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_E2E=OFF >/dev/null
cmake --build build -j"$(nproc)" --target switchboard >/dev/null
exec build/switchboard "$@"
