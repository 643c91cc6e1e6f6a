#!/usr/bin/env bash
# Installs what is missing, builds with -Wall -Wextra -Werror, and runs every
# test: cmocka unit tests and the end-to-end suites (real binary, real
# redis-server, real socket.io-client from npm), through ctest.
#   scripts/test.sh               normal build in build/
#   scripts/test.sh --sanitize    ASan + UBSan build in build-asan/
#   scripts/test.sh --coverage    gcov build in build-cov/: every test, then the coverage report and its floor
#                                 (scripts/coverage.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--coverage" ]]; then
    exec scripts/coverage.sh
fi
scripts/install-deps.sh --test

dir=build
opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON -DSB_E2E=ON)
if [[ "${1:-}" == "--sanitize" ]]; then
    dir=build-asan
    opts+=(-DSB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
    # (ctest sets ASAN_OPTIONS per test: leak checks for the unit tests, see CMakeLists.txt)
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

if [[ ! -d tests/e2e/node_modules ]] || [[ tests/e2e/package-lock.json -nt tests/e2e/node_modules ]]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
# The dashboard's vendored browser files (uPlot, the socket.io client) come from npm.
scripts/build-dashboard.sh
cmake -S . -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
ctest --output-on-failure --timeout 300 -j1
