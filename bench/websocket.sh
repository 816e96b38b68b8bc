#!/usr/bin/env bash
# WebSocket against TCP on one node (issue 14), for the "WebSocket" section of docs/BENCHMARKS.md:
#   - one-to-one, 1,000 clients, a sweep of rates: the highest rate sustained over each transport;
#   - 8,000 idle logged-in connections: the node's RSS over each transport.
# Rounds alternate TCP and WS (ROUNDS of each, 3 by default) so that whatever else runs on the machine
# weighs on both alike; each run gets a fresh node on a fresh SQLite database, with its HTTP listener.
# The databases live in DB_DIR (default /dev/shm, a tmpfs): the comparison is of transports, and on this
# shared machine other people's disk traffic made log commits (fsync) take seconds.
# SCENARIOS="one idle" (the default) picks which to run; SWEEP the rates of the one-to-one runs, every
# one of which runs (--sweep-all: on a shared machine one disturbed step would end a sweep early).
# The JSON line of every run goes to $OUT (bench/results-websocket); bench/websocket-report.sh turns them
# into the section. Uses the release binaries in $BIN_DIR (default ./target/release: build them first
# with `cargo build --release --bin chatserver --bin chat-bench`). Loopback only; every node it starts
# is stopped, by its pid, before the next run and on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh

BIN_DIR=${BIN_DIR:-./target/release}
OUT=${OUT:-bench/results-websocket}
ROUNDS=${ROUNDS:-3}
SWEEP=${SWEEP:-2000,3000,4000,5000,6000,7000,8000,9000,10000,12000,14000}
SCENARIOS=${SCENARIOS:-one idle}
STEP_S=${STEP_S:-5}
IDLE_USERS=${IDLE_USERS:-8000}
DB_DIR=${DB_DIR:-/dev/shm}

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
work=$(mktemp -d "$DB_DIR/clusterchat-bench-ws.XXXXXX")
node_pid=""
stop_node() {
    if [ -n "$node_pid" ]; then
        kill "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
        node_pid=""
    fi
}
trap 'stop_node; rm -rf "$work"' EXIT

# Starts a fresh node; sets node_pid, TCP_ADDR and HTTP_ADDR.
start_node() {
    local name=$1 port http
    port=$(free_port)
    http=$(free_port)
    "$BIN_DIR/chatserver" --listen "127.0.0.1:$port" --http "127.0.0.1:$http" \
        --database "sqlite://$work/$name.db" --node-id "$name" \
        --argon2-memory-kib 64 --argon2-iterations 1 2>"$work/$name.log" &
    node_pid=$!
    wait_port "$port" "$name" && wait_port "$http" "$name (HTTP)" || { cat "$work/$name.log" >&2; exit 1; }
    TCP_ADDR=127.0.0.1:$port
    HTTP_ADDR=127.0.0.1:$http
}

# Runs chat-bench (its JSON line to $OUT/$1.json, its command to $OUT/$1.cmd) against the node.
bench() {
    local name=$1
    shift
    echo "chat-bench $*" | sed "s|--server-pid [0-9]*|--server-pid PID|" >"$OUT/$name.cmd"
    log "$name: chat-bench $*"
    "$BIN_DIR/chat-bench" "$@" 2>"$work/$name.bench.log" | grep '^{' | tail -1 >"$OUT/$name.json"
}

addr_for() { if [ "$1" = ws ]; then echo "$HTTP_ADDR"; else echo "$TCP_ADDR"; fi; }

for round in $(seq 1 "$ROUNDS"); do
    [[ " $SCENARIOS " == *" one "* ]] || break
    for transport in tcp ws; do
        name=one-$transport-$round
        start_node "$name"
        bench "$name" one --transport "$transport" --addr "$(addr_for "$transport")" --users 1000 \
            --sweep "$SWEEP" --sweep-all --duration "$STEP_S" --server-pid "$node_pid" --label "$name"
        stop_node
    done
done

for round in $(seq 1 "$ROUNDS"); do
    [[ " $SCENARIOS " == *" idle "* ]] || break
    for transport in tcp ws; do
        name=idle-$transport-$round
        start_node "$name"
        bench "$name" idle --transport "$transport" --addr "$(addr_for "$transport")" \
            --users "$IDLE_USERS" --duration 10 --login-concurrency 64 --server-pid "$node_pid" --label "$name"
        stop_node
    done
done
log "results in $OUT"
