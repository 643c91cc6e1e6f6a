#!/usr/bin/env bash
# clang-format with the checked-in .clang-format over the C sources: src/, include/, tests/unit/, tests/fuzz/,
# tests/load/ (*.c and *.h).
#   scripts/format.sh           reformats them in place
#   scripts/format.sh --check   changes nothing; fails listing the files that are not formatted
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null 2>&1 || scripts/install-deps.sh --test
mapfile -t files < <(ls src/*.[ch] include/switchboard/*.h tests/unit/*.[ch] tests/fuzz/*.[ch] tests/load/*.[ch] 2>/dev/null)
if [[ "${1:-}" == "--check" ]]; then
    bad=()
    for f in "${files[@]}"; do
        clang-format --style=file "$f" | cmp -s - "$f" || bad+=("$f")
    done
    if ((${#bad[@]})); then
        printf '%s\n' "${bad[@]}"
        echo "format: ${#bad[@]} file(s) not formatted; run scripts/format.sh" >&2
        exit 1
    fi
    exit 0
fi
clang-format --style=file -i "${files[@]}"
