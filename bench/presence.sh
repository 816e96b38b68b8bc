#!/usr/bin/env bash
# PRESENCE under a login storm (issue 11): `chat-bench presence` against fresh release `chatserver`
# nodes on SQLite, one node (and one fresh database in a temp dir) per run, so every run starts alike.
#
#   1. RUNS runs of USERS users with FRIENDS friends each: setup (register, ADD_FRIEND around a ring),
#      then a storm of v2 logins, STORM_CONCURRENCY awaiting their ack at once, every connection read
#      all along; then a storm of logouts. Each run's PRESENCE frames are checked against the contract.
#   2. BASELINE runs (default 2) with --friends 0: the same storms without presence, so the difference is
#      what presence costs.
#
# The raw output of each run (table, then ONE JSON line) goes to bench/results-presence/ (not under
# bench/results/, which `make bench` empties), with the commands that produced it; then, for that
# default directory and REPORT=1 (the default), bench/presence-report.sh rewrites the section
# "Presence: a login storm (issue 11)" of docs/BENCHMARKS.md from them. Nodes use cheap password
# hashing (--argon2-memory-kib 64 --argon2-iterations 1), as in bench/run.sh, so the storm measures the
# login path around the hash. Everything listens on 127.0.0.1 only and is stopped at the end; the temp
# dir is removed. Sizes can be shrunk for a trial run:
#   RUNS=1 USERS=500 FRIENDS=20 RESULTS=/tmp/presence-trial bash bench/presence.sh
# The issue's own case, a user with 1,000 friends (its paragraph in the section comes from this directory):
#   RUNS=1 USERS=1100 FRIENDS=1000 BASELINE=0 RESULTS=bench/results-presence-1000 bash bench/presence.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh

RUNS=${RUNS:-3}
USERS=${USERS:-8000}
FRIENDS=${FRIENDS:-50}
STORM_CONCURRENCY=${STORM_CONCURRENCY:-128}
SETUP_CONCURRENCY=${SETUP_CONCURRENCY:-64}
BASELINE=${BASELINE:-2}
RESULTS=${RESULTS:-bench/results-presence}
REPORT=${REPORT:-1}
TARGET=${CARGO_TARGET_DIR:-target}
CHEAP=(--argon2-memory-kib 64 --argon2-iterations 1)

say() { printf '\n== %s\n' "$*" >&2; }

say "building release binaries (target dir $TARGET)"
cargo build --release --bin chatserver --bin chat-bench --locked

work=$(mktemp -d /tmp/clusterchat-presence.XXXXXX)
# Copies taken now: the target dir may be shared, and a rebuild there mid-run must not change the binary.
cp "$TARGET/release/chatserver" "$TARGET/release/chat-bench" "$work/"
NODE_PID=
cleanup() {
    trap - EXIT INT TERM
    node_stop
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Each storm connection is two descriptors in the tool (reading and writing halves) and one in the node.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files: $(ulimit -n) (the tool needs $((USERS * 2 + 64)))"

mkdir -p "$RESULTS"
{
    git rev-parse --short HEAD
    git status --porcelain -- src Cargo.toml Cargo.lock | awk '{ print $2 }' | tr '\n' ' '
    echo
    echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "vm.max_map_count $(cat /proc/sys/vm/max_map_count); open files $(ulimit -n)"
} >"$RESULTS/build.txt"

# Starts a node on a fresh database: node_start NAME; sets NODE_ADDR and NODE_PID.
node_start() {
    local name=$1 port attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        NODE_ADDR=127.0.0.1:$port
        local cmd=("$work/chatserver" --listen "$NODE_ADDR" --database "sqlite://$work/$name.db"
            --node-id "$name" "${CHEAP[@]}")
        RUST_LOG=warn "${cmd[@]}" 2>"$work/$name.log" &
        NODE_PID=$!
        if wait_port "$port" "$name" && kill -0 "$NODE_PID" 2>/dev/null; then
            printf '%s\n' "${cmd[*]}" >"$RESULTS/$name.server.txt"
            log "$name on $NODE_ADDR (pid $NODE_PID)"
            return 0
        fi
        node_stop
        log "$name did not start on port $port (attempt $attempt): $(tail -c 300 "$work/$name.log")"
    done
    return 1
}

# Stops the node (SIGTERM, then SIGKILL after 10 s).
node_stop() {
    [ -n "$NODE_PID" ] || return 0
    local pid=$NODE_PID
    NODE_PID=
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# One run: run NAME FRIENDS; output in $RESULTS/NAME.out (and .json, .cmd, .load).
run() {
    local name=$1 friends=$2
    node_start "$name"
    local cmd=(chat-bench presence --addr "$NODE_ADDR" --users "$USERS" --friends "$friends"
        --login-concurrency "$SETUP_CONCURRENCY" --storm-concurrency "$STORM_CONCURRENCY"
        --server-pid "$NODE_PID" --label "$name")
    printf '%s\n' "${cmd[*]}" >"$RESULTS/$name.cmd"
    cut -d' ' -f1-3 /proc/loadavg >"$RESULTS/$name.load"
    say "$name: ${cmd[*]}"
    "$work/${cmd[0]}" "${cmd[@]:1}" >"$RESULTS/$name.out" 2>"$work/$name.err" || {
        tail -20 "$work/$name.err" >&2
        return 1
    }
    cut -d' ' -f1-3 /proc/loadavg >>"$RESULTS/$name.load"
    tail -n 1 "$RESULTS/$name.out" >"$RESULTS/$name.json"
    head -n -1 "$RESULTS/$name.out" >&2
    node_stop
    rm -f "$work/$name.db" "$work/$name.db-wal" "$work/$name.db-shm" "$work/$name.db-lock"
}

for i in $(seq 1 "$RUNS"); do
    run "presence-$i" "$FRIENDS"
done
for i in $(seq 1 "$BASELINE"); do
    run "presence-baseline-$i" 0
done
say "results in $RESULTS"
if [ "$REPORT" = 1 ] && [ "$RESULTS" = bench/results-presence ]; then
    SPLICE=1 bash bench/presence-report.sh "$RESULTS"
    say "docs/BENCHMARKS.md: section \"Presence: a login storm (issue 11)\" rewritten"
fi
