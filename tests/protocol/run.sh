#!/usr/bin/env bash
# Runs the official Socket.IO protocol test suite (repository
# socketio/socket.io-protocol, folder test-suite/) against switchboard.
#
#   tests/protocol/run.sh <checkout> [switchboard binary]
#
# <checkout> is a copy of that repository (or of its test-suite/ folder)
# OUTSIDE this repository, e.g. under /tmp; see README.md. The binary defaults
# to $SWITCHBOARD_BIN, then build/switchboard.
#
# The suite's reference server runs without connectionStateRecovery, so
# switchboard runs with --recovery-window 0 here (with it, broadcasts carry
# their offset as a last argument, which the suite's exact packets do not).
#
# Starts, and always stops again: a private redis-server, switchboard on
# 127.0.0.1:3000 (the suite's fixed URL) with the suite's settings, and
# backend.mjs (the suite's server handlers, played over Redis streams).
# Exit code: the suite's (0 = all passed).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CHECKOUT=${1:?usage: tests/protocol/run.sh <socket.io-protocol checkout> [switchboard binary]}
BIN=${2:-${SWITCHBOARD_BIN:-$REPO/build/switchboard}}
PORT=3000            # the suite's URL is fixed: http://localhost:3000
PREFIX="proto:"
READY_TIMEOUT_S=15

if [ -f "$CHECKOUT/test-suite/test-suite.js" ]; then
    SUITE=$(cd "$CHECKOUT/test-suite" && pwd)
elif [ -f "$CHECKOUT/test-suite.js" ]; then
    SUITE=$(cd "$CHECKOUT" && pwd)
else
    echo "run.sh: no test-suite.js under $CHECKOUT" >&2
    exit 2
fi
case "$SUITE/" in
    "$REPO"/*) echo "run.sh: keep the suite's checkout outside this repository ($SUITE)" >&2; exit 2 ;;
esac
if [ ! -x "$BIN" ]; then
    echo "run.sh: switchboard binary not found or not executable: $BIN" >&2
    exit 2
fi
for tool in redis-server redis-cli node npm curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/switchboard-protocol.XXXXXX)
PIDS=()
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "run.sh: logs kept in $WORK"
}
trap cleanup EXIT

# Polls "$@" until it succeeds, for at most READY_TIMEOUT_S seconds.
wait_until() {
    local what=$1; shift
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then echo "run.sh: $what not ready within ${READY_TIMEOUT_S}s" >&2; return 1; fi
        sleep 0.1
    done
}

free_port() {
    node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "run.sh: port $PORT is taken; the suite needs it" >&2
    exit 2
fi

# Dependencies: the suite's own (mocha, chai, ws, node-fetch) and the backend's Redis client.
if [ ! -d "$SUITE/node_modules" ]; then
    (cd "$SUITE" && npm ci --no-audit --no-fund >"$WORK/npm-suite.log" 2>&1) ||
        { echo "run.sh: npm ci in $SUITE failed, see $WORK/npm-suite.log" >&2; exit 2; }
fi
if [ ! -d "$REPO/tests/e2e/node_modules/redis" ]; then
    (cd "$REPO/tests/e2e" && npm ci --no-audit --no-fund >"$WORK/npm-e2e.log" 2>&1) ||
        { echo "run.sh: npm ci in tests/e2e failed, see $WORK/npm-e2e.log" >&2; exit 2; }
fi

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_until "redis-server" redis-cli -p "$RPORT" ping

"$BIN" --listen "127.0.0.1:$PORT" --redis "redis://127.0.0.1:$RPORT" --redis-prefix "$PREFIX" --threads 2 \
    --namespace /custom --ping-interval 300 --ping-timeout 200 --connect-timeout 1000 --recovery-window 0 \
    >"$WORK/switchboard.log" 2>&1 &
PIDS+=($!)
wait_until "switchboard /healthz" curl -fsS "http://127.0.0.1:$PORT/healthz" ||
    { tail -20 "$WORK/switchboard.log" >&2; exit 1; }
wait_until "switchboard /readyz" curl -fsS "http://127.0.0.1:$PORT/readyz" ||
    { tail -20 "$WORK/switchboard.log" >&2; exit 1; }

node "$HERE/backend.mjs" --redis "redis://127.0.0.1:$RPORT" --prefix "$PREFIX" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_until "backend.mjs" grep -qx ready "$WORK/backend.log" || { cat "$WORK/backend.log" >&2; exit 1; }

# "localhost" must reach the IPv4 listener even where it resolves to ::1 first.
set +e
(cd "$SUITE" && NODE_OPTIONS="--dns-result-order=ipv4first" npx --no-install mocha --reporter spec test-suite.js) \
    2>&1 | tee "$WORK/suite.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ]; then
    echo "run.sh: Socket.IO protocol suite PASSED"
else
    echo "run.sh: Socket.IO protocol suite FAILED (exit $rc); switchboard log: $WORK/switchboard.log"
fi
exit "$rc"
