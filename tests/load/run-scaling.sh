#!/bin/bash
# How cost grows with room size: the broadcast scenario (5 msg/s) at several
# room sizes against switchboard, Node socket.io and the floor, one run each,
# then a Markdown table and an SVG plot (plot-scaling.mjs) of CPU per delivery
# and p99 latency against room size. Bounded: each run-bench.sh call is.
#
#   tests/load/run-scaling.sh [--sizes "1000 2500 5000 10000"] [--servers "switchboard node floor"]
#                             [--duration S] [--switchboard BIN] [--out DIR] [--svg FILE]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
sizes="1000 2500 5000 10000"
servers="switchboard node floor"
duration=6
sb=build/switchboard
out=
svg=
while [ $# -gt 0 ]; do
    case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --switchboard) sb=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --svg) svg=$2; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "run-scaling.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
out=${out:-$(mktemp -d /tmp/sbscale.XXXXXX)}
mkdir -p "$out"
svg=${svg:-$out/scaling.svg}
for n in $sizes; do
    echo "room size $n" >&2
    "$HERE/run-bench.sh" --reps 1 --servers "$servers" --scenarios broadcast --clients "$n" --rate 5 \
        --duration "$duration" --sources 127.0.0.1-127.0.0.4 --switchboard "$sb" --out "$out/$n" >"$out/$n.md" 2>"$out/$n.log"
done
node "$HERE/plot-scaling.mjs" --svg "$svg" "$out"/*/results.jsonl
echo "results: $out; plot: $svg" >&2
