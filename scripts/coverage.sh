#!/usr/bin/env bash
# Line and branch coverage of src/ over the whole test suite (unit + e2e), with gcov + gcovr.
# Builds build-cov/ with -DSB_COVERAGE=ON, runs every test through ctest, writes the HTML report to
# build-cov/coverage/index.html, prints a per-file summary, and fails when line coverage of src/ is
# below FLOOR. Branch coverage is reported, not enforced.
#   scripts/coverage.sh
set -euo pipefail

FLOOR=90 # minimum line coverage of src/, in percent

cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh --test

dir=build-cov
if [[ ! -d tests/e2e/node_modules ]] || [[ tests/e2e/package-lock.json -nt tests/e2e/node_modules ]]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
scripts/build-dashboard.sh
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DSB_COVERAGE=ON -DSB_WERROR=ON -DSB_E2E=ON >/dev/null
cmake --build "$dir" -j"$(nproc)"

# Counters accumulate across runs in the .gcda files: start from zero so a previous run cannot pollute this one.
find "$dir" -name '*.gcda' -delete
rm -rf "$dir/coverage"
mkdir -p "$dir/coverage"

# A failing test is reported, but the coverage of what did run is still computed; the exit status says both.
status=0
(cd "$dir" && ctest --output-on-failure --timeout 300 -j1) || status=$?

# The server writes its counters when it returns from main after the SIGTERM drain the e2e fixture sends, so a
# file only the server runs (src/engine.c) must show up. Collect once into JSON, render twice.
gcovr --root "$root" --filter "$root/src/" --object-directory "$dir" -j"$(nproc)" \
    --exclude-unreachable-branches \
    --json "$dir/coverage/coverage.json" \
    --html-details "$dir/coverage/index.html" --html-title "switchboard coverage (src/)" "$dir" >/dev/null

echo "== lines =="
gcovr --root "$root" --add-tracefile "$dir/coverage/coverage.json" --txt
echo "== branches (reported, not enforced) =="
gcovr --root "$root" --add-tracefile "$dir/coverage/coverage.json" --txt --branches
summary=$(gcovr --root "$root" --add-tracefile "$dir/coverage/coverage.json" --print-summary --txt /dev/null)
echo "$summary"
echo "HTML report: $dir/coverage/index.html"

engine=$(gcovr --root "$root" --add-tracefile "$dir/coverage/coverage.json" --txt --filter "$root/src/engine.c" |
    awk '$1 == "src/engine.c" { print $3 }')
if [[ -z "$engine" || "$engine" == "0" ]]; then
    echo "coverage: src/engine.c has no executed lines: the server processes' counters were not collected" >&2
    status=1
fi

lines=$(awk '/^lines:/ { sub("%", "", $2); print $2 }' <<<"$summary")
if awk -v l="$lines" -v f="$FLOOR" 'BEGIN { exit !(l + 0 < f + 0) }'; then
    echo "coverage: line coverage of src/ is ${lines}%, below the floor of ${FLOOR}%" >&2
    status=1
else
    echo "coverage: line coverage of src/ is ${lines}% (floor ${FLOOR}%)"
fi
exit "$status"
