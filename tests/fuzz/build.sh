#!/bin/sh
# Builds the libFuzzer targets straight from the sources they need (no CMake),
# with ASan and UBSan, into $1 (default ./build-fuzz).
#
#   tests/fuzz/build.sh [OUTDIR] [--run SECONDS]
#
# With --run, each target then runs for SECONDS on a small seed corpus that this
# script writes itself (OUTDIR/corpus/<target>/); crashes land in OUTDIR/.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=./build-fuzz
RUN=""
while [ $# -gt 0 ]; do
    case "$1" in
    --run)
        [ $# -ge 2 ] || { echo "build.sh: --run needs SECONDS" >&2; exit 2; }
        RUN=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,9p' "$0"
        exit 0
        ;;
    *)
        OUT=$1
        shift
        ;;
    esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

CC=${CC:-clang}
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$ROOT/include"

echo "building fuzz_engineio"
$CC $CFLAGS "$ROOT/src/common.c" "$ROOT/src/engineio.c" "$ROOT/tests/fuzz/fuzz_engineio.c" \
    -o "$OUT/fuzz_engineio"
echo "building fuzz_socketio"
$CC $CFLAGS "$ROOT/src/common.c" "$ROOT/src/socketio.c" "$ROOT/tests/fuzz/fuzz_socketio.c" \
    $(pkg-config --cflags --libs jansson) -o "$OUT/fuzz_socketio"

[ -n "$RUN" ] || exit 0

# seed NAME FILE CONTENT: backslash escapes (%b) are expanded, so \0036 writes 0x1e.
seed() {
    mkdir -p "$OUT/corpus/$1"
    printf "%b" "$3" >"$OUT/corpus/$1/$2"
}
seed fuzz_engineio open '0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}'
seed fuzz_engineio ping '2probe'
seed fuzz_engineio payload '4hello\00364world\0036bAQID'
seed fuzz_engineio payload2 '2\00361\00366\0036b\00364/chat,\0036b/w=='
seed fuzz_engineio query 'EIO=4&transport=polling&t=N8hyd6w&sid=ab%2Dc+d&b64=1'
seed fuzz_engineio badpct 'EIO=%zz&sid=%4'
seed fuzz_socketio connect '0'
seed fuzz_socketio connect_nsp '0/chat,{"token":"x"}'
seed fuzz_socketio event '2["e",1,{"a":[2]}]'
seed fuzz_socketio event_ack '2/chat,7["e","\\u0000",-1.5e3,null,true]'
seed fuzz_socketio ack '3/chat,5[]'
seed fuzz_socketio disconnect '1/chat,'
seed fuzz_socketio bin_event '52-/x,9["e",{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]'
seed fuzz_socketio bin_ack '61-/chat,3[{"_placeholder":true,"num":0}]'
seed fuzz_socketio dollar_binary '2["e",{"$binary":"AQID"},{"_placeholder":true,"num":0}]'

status=0
for t in fuzz_engineio fuzz_socketio; do
    echo "running $t for ${RUN}s"
    mkdir -p "$OUT/crashes/$t"
    (cd "$OUT" && "./$t" -max_total_time="$RUN" -max_len=4096 -timeout=10 \
        -artifact_prefix="$OUT/crashes/$t/" "$OUT/corpus/$t") || status=1
done
exit $status
