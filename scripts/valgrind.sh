#!/usr/bin/env bash
# Runs every unit test binary under valgrind memcheck (full leak check); fails on any error or leak.
#   scripts/valgrind.sh [BUILD_DIR]    default build/ (the normal build of scripts/test.sh); configured and built
#                                      here if needed. Must not be an ASan build: the two do not mix.
# Suppressions, each with its reason: scripts/valgrind.supp. Logs: BUILD_DIR/valgrind/<test>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${1:-build}
command -v valgrind >/dev/null 2>&1 || scripts/install-deps.sh --test
if [[ -f "$dir/CMakeCache.txt" ]] && grep -q '^SB_SANITIZE:BOOL=ON' "$dir/CMakeCache.txt"; then
    echo "valgrind: $dir is a sanitizer build; give a normal one" >&2
    exit 2
fi
if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON >/dev/null
fi
cmake --build "$dir" -j"$(nproc)" >/dev/null
mkdir -p "$dir/valgrind"
# What ctest gives the unit tests (CMakeLists.txt).
export SWITCHBOARD_TEST_REDIS_SERVER=redis-server
fail=0
n=0
for t in "$dir"/test_*; do
    [[ -x "$t" && -f "$t" ]] || continue
    name=$(basename "$t")
    log="$dir/valgrind/$name.log"
    n=$((n + 1))
    if valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
            --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 --track-origins=yes \
            --suppressions="$root/scripts/valgrind.supp" --log-file="$log" "$t" >"$log.out" 2>&1; then
        echo "valgrind: $name clean" >&2
    else
        echo "valgrind: $name FAILED (valgrind log: $log, test output: $log.out)" >&2
        grep -E '^==[0-9]+== (Invalid|Conditional|Syscall|Mismatched|Source and|.*definitely|.*indirectly|.*possibly|ERROR SUMMARY)' "$log" | head -20 >&2 || true
        tail -5 "$log.out" >&2
        fail=1
    fi
done
if ((n == 0)); then
    echo "valgrind: no unit test binaries in $dir (is cmocka installed?)" >&2
    exit 1
fi
exit "$fail"
