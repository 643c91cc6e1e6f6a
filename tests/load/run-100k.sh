#!/usr/bin/env bash
# 100k idle connections held on this machine by several switchboard processes
# sharing one Redis, with pings answered (issue 7): one process may hold at
# most ~19.9k sockets here (20,000 open files), so six nodes of ~16.7k each.
#
#   tests/load/run-100k.sh [--nodes N] [--per-node C] [--hold S] [--switchboard PATH] [--out DIR]
#
# Starts (and always stops) one redis-server, N switchboard nodes (--threads 1,
# --ping-interval 5s so that several ping rounds happen while the clients are
# held) and N sbload `idle` generators, one per node, each from its own two
# 127.0.0.x source addresses. After the hold it reads every node's /metrics:
# connected sockets, disconnects by reason (a client that missed a ping would
# show as "ping timeout"), RSS; and Redis's used_memory. Prints one Markdown
# table and exits 0 when every client was still connected at the end.
# Bounded: each generator has --timeout 240; the whole run takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=6
per=16700
hold=20
bin=${SWITCHBOARD_BIN:-build/switchboard}
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --per-node) per=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --switchboard) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--nodes N] [--per-node C] [--hold S] [--switchboard PATH] [--out DIR]" >&2; exit 2 ;;
    esac
done
((per <= 19000)) || { echo "run-100k: --per-node is at most 19000 (20,000 open files per process)" >&2; exit 2; }
((nodes <= 60)) || { echo "run-100k: at most 60 nodes (two source addresses each in 127.0.0.0/8)" >&2; exit 2; }
out=${out:-$(mktemp -d /tmp/sb100k.XXXXXX)}
mkdir -p "$out"
tests/load/build.sh "$out/bin" >/dev/null

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url seconds
    for ((i = 0; i < $2 * 10; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --maxclients 1000 >"$out/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
for ((i = 0; i < 50; i++)); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

ports=()
spids=()
for ((n = 0; n < nodes; n++)); do
    p=$(free_port)
    "$bin" --listen "127.0.0.1:$p" --redis "redis://127.0.0.1:$rport" --threads 1 --rate-connections off \
        --ping-interval 5s --ping-timeout 10s --log-level warn >"$out/node$n.log" 2>&1 &
    pids+=($!)
    spids+=($!)
    ports+=("$p")
done
for p in "${ports[@]}"; do wait_http "http://127.0.0.1:$p/readyz" 20 || { echo "node on $p not ready" >&2; exit 1; }; done

started=$(date +%s)
gpids=()
for ((n = 0; n < nodes; n++)); do
    a=$((2 * n + 10))
    "$out/bin/sbload" idle --url "http://127.0.0.1:${ports[$n]}" --label "node$n" --clients "$per" \
        --sources "127.0.0.$a-127.0.0.$((a + 1))" --concurrency 100 --idle-hold "$hold" --connect-timeout 200 \
        --timeout 240 --server-pid "${spids[$n]}" --quiet >"$out/gen$n.json" 2>"$out/gen$n.err" &
    pids+=($!)
    gpids+=($!)
done
# While the generators hold their clients, take the figures (they exit after the hold).
held=0
for ((t = 0; t < 240; t++)); do
    sum=0
    for p in "${ports[@]}"; do
        v=$(curl -fsS "http://127.0.0.1:$p/metrics" | awk '$1 == "switchboard_sockets" {print $2}')
        sum=$((sum + ${v:-0}))
    done
    ((sum > held)) && held=$sum
    ((sum >= nodes * per)) && break
    sleep 1
done
connected_after=$(($(date +%s) - started))
sleep "$((hold / 2))" # at least one more ping round with everyone connected
{
    echo "| node | sockets | ping timeouts | other disconnects | RSS MiB |"
    echo "|---|---:|---:|---:|---:|"
} >"$out/table.md"
total=0
pings=0
for ((n = 0; n < nodes; n++)); do
    m=$(curl -fsS "http://127.0.0.1:${ports[$n]}/metrics")
    s=$(awk '$1 == "switchboard_sockets" {print $2}' <<<"$m")
    pt=$(grep -F 'switchboard_disconnects_total{reason="ping timeout"}' <<<"$m" | awk '{print $NF}')
    other=$(grep -F 'switchboard_disconnects_total{' <<<"$m" | grep -vF 'ping timeout' | awk '{s += $NF} END {print s + 0}')
    rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/${spids[$n]}/status")
    echo "| node$n | $s | ${pt:-0} | $other | $rss |" >>"$out/table.md"
    total=$((total + s))
    pings=$((pings + ${pt:-0}))
done
used=$(redis-cli -p "$rport" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
for p in "${gpids[@]}"; do wait "$p" || true; done
{
    echo
    echo "total sockets held: $total of $((nodes * per)) (all connected after ${connected_after} s; peak seen $held)"
    echo "ping timeouts: $pings; Redis used_memory: $((used / 1024 / 1024)) MiB ($((used / (total > 0 ? total : 1))) B per socket)"
} >>"$out/table.md"
cat "$out/table.md"
echo "(results and logs in $out)"
[[ $total -eq $((nodes * per)) && $pings -eq 0 ]]
