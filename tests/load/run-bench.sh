#!/usr/bin/env bash
# Runs the load scenarios against switchboard, Node socket.io (in-memory and
# with @socket.io/redis-streams-adapter) and the frame-only floor, on this
# machine, in one go: server (and its Redis) pinned to one core, generator to
# another, every (repetition, scenario, server) on a fresh server and Redis.
# Prints a Markdown table with medians, spreads and ratios, and writes JSON lines.
#
#   tests/load/run-bench.sh [options]          (--help for the list)
#
# Needs: gcc, libevent, hiredis, OpenSSL (tests/load/build.sh), redis-server,
# node >= 20 with tests/load/reference installed (npm ci there; done here when
# node_modules is missing), taskset, and a switchboard binary.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

reps=3
servers="switchboard node node-redis floor"
scenarios="idle broadcast saturation acks events churn rest"
clients=1000
idle_clients=
rate=5
duration=10
sat_messages=200
window=4
ack_clients=
inflight=1
ev_window=4
ev_rate=
churn_rate=50
churn_life=1
rest_clients=10
rest_window=64
rest_messages=20000
rest_key=sbbench-rest-key-0123456789
polling_pct=0
payload=32
sources=127.0.0.1-127.0.0.4
server_cpu=0
gen_cpu=1
sb_bin=${SWITCHBOARD_BIN:-$REPO/build/switchboard}
out=
gen_dir=
sb_args=()
jwt=none

usage() {
    cat <<EOF
usage: $0 [options]
  --reps N              repetitions of every (scenario, server) (default $reps)
  --servers "LIST"      of: switchboard node node-redis floor (default all)
  --scenarios "LIST"    of: idle broadcast saturation acks events churn rest (default all)
  --clients N           clients per scenario (default $clients; at most 19900)
  --idle-clients N      clients of the idle scenario (default --clients)
  --rate R              broadcast/churn messages per second (default $rate)
  --duration S          seconds of broadcast/acks/events/churn (default $duration)
  --sat-messages M      messages of the saturation scenario (default $sat_messages)
  --window W            saturation: messages in flight (default $window)
  --ack-clients N       acks, events: emitting clients (default all)
  --ev-window W         events: unseen events per client at saturation (default $ev_window)
  --ev-rate R           events: a fixed total rate (events/s) instead of saturation
  --inflight K          acks: emits in flight per client (default $inflight)
  --churn-rate R        churn: connects per second (default $churn_rate)
  --churn-life S        churn: seconds each churning client stays (default $churn_life)
  --rest-clients N      rest: room size (default $rest_clients)
  --rest-window W       rest: POST /v1/emit messages in flight (default $rest_window)
  --rest-messages M     rest: messages (default $rest_messages)
  --polling-pct P       long-polling share (not for the floor, which is WebSocket only) (default $polling_pct)
  --payload BYTES       padding per broadcast (default $payload)
  --sources RANGE       generator source addresses, 127.0.0.0/8 only (default $sources)
  --server-cpu N        core of the server and its Redis (default $server_cpu)
  --gen-cpu N           core of the generator (default $gen_cpu)
  --switchboard PATH    binary (default \$SWITCHBOARD_BIN or build/switchboard)
  --sb-arg ARG          extra switchboard argument (repeatable)
  --jwt none|hs256|rs256  clients send a JWT (one user each); switchboard and node verify it (default none)
  --out DIR             where results go (default a new /tmp/sbbench.XXXX)
  --gen-dir DIR         where sbload and floor are built (default OUT/bin)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --reps) reps=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --idle-clients) idle_clients=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --sat-messages) sat_messages=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --ack-clients) ack_clients=$2; shift 2 ;;
    --inflight) inflight=$2; shift 2 ;;
    --ev-window) ev_window=$2; shift 2 ;;
    --ev-rate) ev_rate=$2; shift 2 ;;
    --churn-rate) churn_rate=$2; shift 2 ;;
    --churn-life) churn_life=$2; shift 2 ;;
    --rest-clients) rest_clients=$2; shift 2 ;;
    --rest-window) rest_window=$2; shift 2 ;;
    --rest-messages) rest_messages=$2; shift 2 ;;
    --polling-pct) polling_pct=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    --sources) sources=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --gen-cpu) gen_cpu=$2; shift 2 ;;
    --switchboard) sb_bin=$2; shift 2 ;;
    --sb-arg) sb_args+=("$2"); shift 2 ;;
    --jwt) jwt=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --gen-dir) gen_dir=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
idle_clients=${idle_clients:-$clients}
for n in "$clients" "$idle_clients"; do
    if [ "$n" -gt 19900 ]; then
        echo "at most 19900 clients per generator process" >&2
        exit 2
    fi
done
need_fds=$((idle_clients > clients ? idle_clients : clients))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((need_fds + 100)) ]; then
    ulimit -n $((need_fds + 100)) 2>/dev/null || {
        echo "ulimit -n is $(ulimit -n): too low for $need_fds clients" >&2
        exit 2
    }
fi

out=${out:-$(mktemp -d /tmp/sbbench.XXXXXX)}
mkdir -p "$out"
gen_dir=${gen_dir:-$out/bin}
results=$out/results.jsonl
: >"$results"

pin_server=()
pin_gen=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c "$server_cpu")
    pin_gen=(taskset -c "$gen_cpu")
else
    echo "warning: fewer than 2 cores or no taskset: nothing pinned" >&2
fi

echo "# building the generator and the floor into $gen_dir" >&2
"$HERE/build.sh" "$gen_dir"
if [[ " $servers " == *" node"* ]] && [ ! -d "$HERE/reference/node_modules" ]; then
    echo "# installing the Node reference (npm ci)" >&2
    (cd "$HERE/reference" && npm ci --no-audit --no-fund >&2)
fi
if [[ " $servers " == *" switchboard "* ]] && [ ! -x "$sb_bin" ]; then
    echo "switchboard binary not found at $sb_bin (build it or pass --switchboard)" >&2
    exit 2
fi

# JWTs: one token per client (each its own user), verified by switchboard (--jwt-alg) and by the Node
# reference (io.use with node:crypto); the floor ignores them.
sb_jwt=()
node_jwt=()
gen_jwt=()
case "$jwt" in
none) ;;
hs256 | rs256)
    ntok=$((need_fds + (churn_rate * (duration + 5)) + 10))
    if [ "$jwt" = hs256 ]; then
        secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
        node "$HERE/mktokens.mjs" "$ntok" --hs256 "$secret" >"$out/tokens.txt"
        sb_jwt=(--jwt-alg HS256 --jwt-secret "$secret")
        node_jwt=(--jwt-secret "$secret")
    else
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out/jwt-key.pem" 2>/dev/null
        openssl pkey -in "$out/jwt-key.pem" -pubout -out "$out/jwt-pub.pem"
        node "$HERE/mktokens.mjs" "$ntok" --rs256 "$out/jwt-key.pem" >"$out/tokens.txt"
        sb_jwt=(--jwt-alg RS256 --jwt-public-key "$out/jwt-pub.pem")
        node_jwt=(--jwt-public-key "$out/jwt-pub.pem")
    fi
    gen_jwt=(--token-file "$out/tokens.txt")
    ;;
*) echo "--jwt must be none, hs256 or rs256" >&2; exit 2 ;;
esac

free_port() {
    node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Every process we start, so that an interrupted run leaves nothing behind.
started_pids=()
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${started_pids[@]}"; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_line() { # file pattern seconds

    for _ in $(seq 1 $(($3 * 10))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

wait_redis() { # port

    for _ in $(seq 1 100); do
        redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    return 1
}

wait_http() { # url seconds

    for _ in $(seq 1 $(($2 * 10))); do
        node -e "require('http').get(process.argv[1], (r) => process.exit(r.statusCode === 200 ? 0 : 1))
            .on('error', () => process.exit(1))" "$1" && return 0
        sleep 0.1
    done
    return 1
}

redis_pid=
server_pid=
redis_port=
server_port=

start_redis() {
    redis_port=$(free_port)
    "${pin_server[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --loglevel warning >"$out/redis-$redis_port.log" 2>&1 &
    redis_pid=$!
    started_pids+=("$redis_pid")
    wait_redis "$redis_port" || { echo "redis-server did not start" >&2; return 1; }
}

start_server() { # name
    server_port=$(free_port)
    local log=$out/$1-$server_port.log
    case "$1" in
    switchboard)
        start_redis
        "${pin_server[@]}" "$sb_bin" --listen "127.0.0.1:$server_port" --redis "redis://127.0.0.1:$redis_port" \
            --threads 1 --rate-connections off --rate-socket-events off --rate-user-events off --rate-api off \
            --api-key "$rest_key" --log-level warn "${sb_jwt[@]}" "${sb_args[@]}" >"$log" 2>&1 &
        server_pid=$!
        started_pids+=("$server_pid")
        wait_http "http://127.0.0.1:$server_port/readyz" 20 || { echo "switchboard not ready; see $log" >&2; return 1; }
        ;;
    node)
        "${pin_server[@]}" node "$HERE/reference/server.mjs" --port "$server_port" "${node_jwt[@]}" >"$log" 2>&1 &
        server_pid=$!
        started_pids+=("$server_pid")
        wait_line "$log" "^listening" 20 || { echo "node not ready; see $log" >&2; return 1; }
        ;;
    node-redis)
        start_redis
        "${pin_server[@]}" node "$HERE/reference/server.mjs" --port "$server_port" \
            --redis "redis://127.0.0.1:$redis_port" "${node_jwt[@]}" >"$log" 2>&1 &
        server_pid=$!
        started_pids+=("$server_pid")
        wait_line "$log" "^listening" 20 || { echo "node-redis not ready; see $log" >&2; return 1; }
        ;;
    floor)
        "${pin_server[@]}" "$gen_dir/floor" --listen "127.0.0.1:$server_port" >"$log" 2>&1 &
        server_pid=$!
        started_pids+=("$server_pid")
        wait_line "$log" "^listening" 10 || { echo "floor not ready; see $log" >&2; return 1; }
        ;;
    *) echo "unknown server $1" >&2; return 1 ;;
    esac
}

stop_server() {
    stop_pid "$server_pid"
    stop_pid "$redis_pid"
    server_pid=
    redis_pid=
}

run_one() { # rep server scenario
    local rep=$1 srv=$2 sc=$3 args=() pp=$polling_pct limit
    [ "$srv" = floor ] && pp=0
    if [ "$sc" = rest ] && [ "$srv" = floor ]; then
        return 0 # the floor has no REST API
    fi
    start_server "$srv" || { stop_server; return 0; }
    args=(--url "http://127.0.0.1:$server_port" --label "$srv" --server-pid "$server_pid" --sources "$sources"
        --polling-pct "$pp" --payload "$payload" --quiet "${gen_jwt[@]}")
    [ -n "$redis_pid" ] && args+=(--redis-pid "$redis_pid")
    [ "$srv" = switchboard ] && args+=(--redis "redis://127.0.0.1:$redis_port")
    case "$sc" in
    idle) args=(idle "${args[@]}" --clients "$idle_clients" --idle-hold 2) ;;
    broadcast) args=(broadcast "${args[@]}" --clients "$clients" --rate "$rate" --duration "$duration") ;;
    saturation) args=(broadcast "${args[@]}" --clients "$clients" --rate 0 --window "$window" --messages "$sat_messages") ;;
    acks) args=(acks "${args[@]}" --clients "$clients" --duration "$duration" --inflight "$inflight") ;;
    events) args=(events "${args[@]}" --clients "$clients" --duration "$duration" --window "$ev_window")
        [ -n "$ev_rate" ] && args+=(--rate "$ev_rate") ;;
    churn) args=(churn "${args[@]}" --clients "$clients" --rate "$rate" --duration "$duration" --churn-rate "$churn_rate"
        --churn-life "$churn_life") ;;
    rest) args=(broadcast "${args[@]}" --clients "$rest_clients" --rate 0 --window "$rest_window"
        --messages "$rest_messages" --rest-key "$rest_key") ;;
    *) echo "unknown scenario $sc" >&2; stop_server; return 0 ;;
    esac
    if [ "$sc" = acks ] || [ "$sc" = events ]; then [ -n "$ack_clients" ] && args+=(--ack-clients "$ack_clients"); fi
    # Each run is bounded: the generator's own --timeout, and a hard kill a little later.
    limit=$((duration * 3 + 120))
    args+=(--timeout "$limit")
    local line
    line=$(timeout -k 5 $((limit + 30)) "${pin_gen[@]}" "$gen_dir/sbload" "${args[@]}" 2>>"$out/sbload.log" |
        tail -n 1) || true
    stop_server
    if [ -z "$line" ]; then
        echo "  $srv $sc rep $rep: no result (see $out/sbload.log)" >&2
        return 0
    fi
    # Tag the line with the run's identity (the scenario name of the bench, not of the generator).
    line="{\"bench\":\"$sc\",\"rep\":$rep,${line#\{}"
    echo "$line" >>"$results"
    echo "  $srv $sc rep $rep done" >&2
}

{
    echo "# switchboard load benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
    echo "# servers pinned to core $server_cpu, generator to core $gen_cpu; $reps repetitions"
    echo "# clients $clients (idle $idle_clients), JWT $jwt, rate $rate/s, duration ${duration}s," \
        "saturation $sat_messages msgs window $window, churn $churn_rate/s x ${churn_life}s," \
        "rest $rest_messages msgs to $rest_clients window $rest_window, polling $polling_pct%, payload $payload B"
} | tee "$out/header.txt" >&2

for rep in $(seq 1 "$reps"); do
    for sc in $scenarios; do
        for srv in $servers; do
            run_one "$rep" "$srv" "$sc"
        done
    done
done

cat "$out/header.txt"
node "$HERE/aggregate.mjs" "$results" "$out/summary.jsonl" --server-cpu "$server_cpu" --gen-cpu "$gen_cpu"
echo
echo "raw results: $results"
echo "summary JSON lines: $out/summary.jsonl"
