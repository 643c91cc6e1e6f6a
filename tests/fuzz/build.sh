#!/bin/sh
# Builds the libFuzzer targets straight from the sources they need (no CMake),
# with ASan and UBSan, into OUTDIR (default ./build-fuzz).
#
#   tests/fuzz/build.sh [OUTDIR] [--run SECONDS] [--only TARGET]...
#
# Targets: every tests/fuzz/fuzz_*.c; fuzz_auth only once src/auth.c exists.
# With --run, each target then runs for SECONDS from its committed seed corpus
# tests/fuzz/corpus/<target>/ (copied to OUTDIR/corpus/<target>/, where the new
# inputs go), prints one summary line, and a crash fails the script (its input
# lands in OUTDIR/crashes/<target>/). --only limits both steps to TARGET.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=./build-fuzz
RUN=""
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
    --run)
        [ $# -ge 2 ] || { echo "build.sh: --run needs SECONDS" >&2; exit 2; }
        RUN=$2
        shift 2
        ;;
    --only)
        [ $# -ge 2 ] || { echo "build.sh: --only needs TARGET" >&2; exit 2; }
        ONLY="$ONLY $2"
        shift 2
        ;;
    -h | --help)
        sed -n '2,12p' "$0"
        exit 0
        ;;
    *)
        OUT=$1
        shift
        ;;
    esac
done
case "$RUN" in
'' | *[!0-9]*) [ -z "$RUN" ] || { echo "build.sh: --run needs a whole number of seconds" >&2; exit 2; } ;;
esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

CC=${CC:-clang}
CFLAGS="-std=c11 -D_GNU_SOURCE -DH2O_USE_LIBUV=0 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$ROOT/include -I$ROOT/src"

# The sources and libraries of each target: as few as the target needs, so one
# half-written module elsewhere never stops the fuzzing of another.
sources_of() {
    case "$1" in
    fuzz_engineio) echo "src/common.c src/engineio.c" ;;
    fuzz_socketio) echo "src/common.c src/json.c src/socketio.c" ;;
    fuzz_json) echo "src/json.c" ;;
    fuzz_ws) echo "src/common.c src/ws.c" ;;
    fuzz_auth) echo "src/common.c src/json.c src/auth.c src/map.c" ;;
    *) echo "src/common.c src/${1#fuzz_}.c" ;;
    esac
}
libs_of() {
    case "$1" in
    fuzz_engineio) echo "" ;;
    fuzz_socketio) echo "jansson" ;;
    fuzz_json) echo "jansson" ;;
    fuzz_ws) echo "libh2o-evloop openssl" ;;
    fuzz_auth) echo "libjwt jansson openssl" ;;
    *) echo "libh2o-evloop hiredis jansson libjwt openssl" ;;
    esac
}

# Every source but main.c, plus the generated Lua library: the fallback for a
# target whose module needs more than itself and common.c.
all_sources() {
    if [ ! -f "$OUT/functions_lua.c" ] || [ -n "$(find "$ROOT/lua" -newer "$OUT/functions_lua.c" -name '*.lua')" ]; then
        cmake -DLUA_DIR="$ROOT/lua" -DOUT="$OUT/functions_lua.c" -P "$ROOT/cmake/embed_lua.cmake" >/dev/null
    fi
    for f in "$ROOT"/src/*.c; do
        [ "$(basename "$f")" = main.c ] || printf '%s ' "$f"
    done
    echo "$OUT/functions_lua.c"
}

TARGETS=""
for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
    t=$(basename "$f" .c)
    [ -z "$ONLY" ] || case " $ONLY " in *" $t "*) ;; *) continue ;; esac
    if [ "$t" = fuzz_auth ] && [ ! -f "$ROOT/src/auth.c" ]; then
        echo "skipping fuzz_auth: src/auth.c does not exist yet"
        continue
    fi
    TARGETS="$TARGETS $t"
done
[ -n "$TARGETS" ] || { echo "build.sh: no fuzz target selected" >&2; exit 2; }

for t in $TARGETS; do
    echo "building $t"
    srcs=""
    for s in $(sources_of "$t"); do srcs="$srcs $ROOT/$s"; done
    libs=$(libs_of "$t")
    # shellcheck disable=SC2086 # word splitting of the lists is intended
    flags=$( [ -z "$libs" ] || pkg-config --cflags --libs $libs )
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS $srcs "$ROOT/tests/fuzz/$t.c" $flags -lpthread -lm -o "$OUT/$t" 2>"$OUT/$t.build.log"; then
        echo "  $t does not link from$srcs alone; building it with every source"
        # shellcheck disable=SC2046,SC2086 # word splitting of the lists is intended
        $CC $CFLAGS $(all_sources) "$ROOT/tests/fuzz/$t.c" \
            $(pkg-config --cflags --libs libh2o-evloop hiredis jansson libjwt openssl) -lpthread -lm -o "$OUT/$t" || {
            cat "$OUT/$t.build.log" >&2
            exit 1
        }
    fi
done

[ -n "$RUN" ] || exit 0

# One line per target from libFuzzer's log: runs, coverage, features, corpus, speed.
summary() {
    awk -v t="$1" -v secs="$2" -v rc="$3" '
        /^#[0-9]+/ { for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i + 1); if ($i == "ft:") ft = $(i + 1);
                     if ($i == "corp:") corp = $(i + 1); if ($i == "exec/s:") eps = $(i + 1); if ($i == "rss:") rss = $(i + 1) } }
        /^Done [0-9]+ runs/ { runs = $2 }
        /ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)/ || /runtime error:/ { crash = crash + 1 }
        END { printf "%-16s %s: %s runs in %ss, cov %s, ft %s, corpus %s, %s exec/s, rss %s\n", t,
                     (rc == 0 && crash == 0) ? "ok" : "CRASH", runs == "" ? "?" : runs, secs, cov, ft, corp, eps, rss }
    ' "$OUT/$1.log"
}

status=0
for t in $TARGETS; do
    work="$OUT/corpus/$t"
    mkdir -p "$work" "$OUT/crashes/$t"
    seeds="$ROOT/tests/fuzz/corpus/$t"
    [ -d "$seeds" ] || seeds="$ROOT/tests/fuzz/corpus/${t#fuzz_}" # also corpus/auth for fuzz_auth
    [ -d "$seeds" ] || { echo "  (no seed corpus in tests/fuzz/corpus/$t: starting from nothing)"; seeds=""; }
    rc=0
    # New inputs go to $work; the committed seeds are only read.
    # shellcheck disable=SC2086
    (cd "$OUT" && "./$t" -max_total_time="$RUN" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/crashes/$t/" "$work" $seeds) >"$OUT/$t.log" 2>&1 || rc=$?
    summary "$t" "$RUN" "$rc"
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "  $t failed (exit $rc); log $OUT/$t.log; input in $OUT/crashes/$t/:" >&2
        ls "$OUT/crashes/$t" >&2 || true
        grep -m5 -E 'ERROR:|runtime error:|SUMMARY:' "$OUT/$t.log" >&2 || true
    fi
done
exit $status
