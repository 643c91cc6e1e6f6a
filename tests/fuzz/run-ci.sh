#!/bin/sh
# CI entry of the fuzz targets: builds every target of tests/fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for a short bounded time
# from its committed seed corpus; any crash, sanitizer report, leak or timeout
# fails the run. One summary line per target (runs, coverage).
#
#   tests/fuzz/run-ci.sh [--seconds N] [--out DIR] [--only TARGET]...
#
#   --seconds N   time per target (default 20, or $FUZZ_SECONDS)
#   --out DIR     build and work directory (default a fresh temporary one, removed on success)
#   --only T      run only target T (repeatable)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
OUT=""
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds)
        [ $# -ge 2 ] || { echo "run-ci.sh: --seconds needs N" >&2; exit 2; }
        SECONDS_PER_TARGET=$2
        shift 2
        ;;
    --out)
        [ $# -ge 2 ] || { echo "run-ci.sh: --out needs DIR" >&2; exit 2; }
        OUT=$2
        shift 2
        ;;
    --only)
        [ $# -ge 2 ] || { echo "run-ci.sh: --only needs TARGET" >&2; exit 2; }
        ONLY="$ONLY --only $2"
        shift 2
        ;;
    -h | --help)
        sed -n '2,12p' "$0"
        exit 0
        ;;
    *)
        echo "run-ci.sh: unknown argument $1" >&2
        exit 2
        ;;
    esac
done

command -v "${CC:-clang}" >/dev/null || { echo "run-ci.sh: ${CC:-clang} not found (apt-get install clang)" >&2; exit 2; }
keep=1
if [ -z "$OUT" ]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-fuzz.XXXXXX")
    keep=0
fi

rc=0
# shellcheck disable=SC2086 # $ONLY is a list of flags
sh "$HERE/build.sh" "$OUT" --run "$SECONDS_PER_TARGET" $ONLY || rc=$?
if [ "$rc" -eq 0 ] && [ "$keep" -eq 0 ]; then
    rm -rf "$OUT"
elif [ "$rc" -ne 0 ]; then
    echo "fuzzing failed; logs, corpora and crashing inputs kept in $OUT" >&2
fi
exit $rc
