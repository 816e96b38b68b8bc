#!/usr/bin/env bash
# `make bench`: measures release `chatserver` nodes with `chat-bench` on this machine and writes
# docs/BENCHMARKS.md (every figure with the command that reproduces it) and docs/latency-vs-rate.svg.
#
#   1. one node on the embedded SQLite store (a temp file): one-to-one sweep, group chat sweep;
#      a fresh node for one-to-one with and without a flood from one connection (five rounds), and the
#      same with the database on tmpfs;
#      then fresh nodes for idle connections and login storms (cheap argon2, resume tokens, default argon2);
#   2. one node on a private MariaDB: one-to-one sweep, login storm;
#   3. two nodes on MariaDB + a private Redis: one-to-one where every message crosses nodes;
#   4. the durable log (issue 10): acknowledged v2 sends (SQLite, MariaDB), a new device's sync, bytes per
#      stored message, and with OLD_SERVER=PATH (a chatserver built from an older commit, OLD_COMMIT=its
#      hash) the one-to-one sweep on that binary and on this one, alternating, CMP_ROUNDS rounds each.
#
# DURABLE_ONLY=1 runs only what section 4 needs (with the group sweep and a short MariaDB sweep) and
# rewrites just the section "The durable log (issue 10)" of docs/BENCHMARKS.md, in place:
#   DURABLE_ONLY=1 OLD_SERVER=/tmp/chatserver-d08d665 OLD_COMMIT=d08d665 bash bench/run.sh
#
# Nodes use cheap password hashing (--argon2-memory-kib 64 --argon2-iterations 1) except where a figure
# says otherwise, so setup is fast and the figures measure the chat path. Everything listens on
# 127.0.0.1 only and is stopped at the end, whatever happens. Sizes can be shrunk for a trial run:
#   STEP_S=3 USERS=200 IDLE_USERS=500 STORM_USERS=500 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh

STEP_S=${STEP_S:-10}
USERS=${USERS:-1000}
IDLE_USERS=${IDLE_USERS:-8000}
STORM_USERS=${STORM_USERS:-8000}
STRONG_STORM_USERS=${STRONG_STORM_USERS:-500}
ONE_SWEEP=${ONE_SWEEP:-5000,10000,15000,20000,25000,30000,35000,40000,45000,50000,55000,60000}
GROUP_SWEEP=${GROUP_SWEEP:-1000,2000,2632,3000,3500,4000,5000}
MYSQL_SWEEP=${MYSQL_SWEEP:-10000,25000,40000,50000}
CROSS_SWEEP=${CROSS_SWEEP:-2500,5000,7500,10000,12500,15000,20000,25000,30000}
FLOOD_ROUNDS=${FLOOD_ROUNDS:-5}
FLOOD_LOAD=${FLOOD_LOAD:-10000}
FLOOD_RATE=${FLOOD_RATE:-10000}
ACK_SWEEP=${ACK_SWEEP:-2500,5000,7500,10000,12500,15000,17500,20000,25000,30000}
ACK_MYSQL_SWEEP=${ACK_MYSQL_SWEEP:-2500,5000,7500,10000,12500,15000,20000}
CMP_SWEEP=${CMP_SWEEP:-5000,10000,15000,20000,22500,25000,27500,30000,32500,35000,37500,40000}
CMP_ROUNDS=${CMP_ROUNDS:-3}
CMP_CPU_RATE=${CMP_CPU_RATE:-20000}
SYNC_PEERS=${SYNC_PEERS:-100}
SYNC_PER_PEER=${SYNC_PER_PEER:-100}
OLD_SERVER=${OLD_SERVER:-}
OLD_COMMIT=${OLD_COMMIT:-}
DURABLE_ONLY=${DURABLE_ONLY:-}
MAP_COUNT=262144

RESULTS=bench/results
[ -n "$DURABLE_ONLY" ] && RESULTS=bench/results/durable
BENCH=./target/release/chat-bench
SERVER=./target/release/chatserver
CHEAP=(--argon2-memory-kib 64 --argon2-iterations 1)

say() { printf '\n== %s\n' "$*" >&2; }

services_install mariadb redis
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }

say "building release binaries"
cargo build --release --bin chatserver --bin chat-bench --locked

work=$(mktemp -d /tmp/clusterchat-bench.XXXXXX)
shm=$(mktemp -d /dev/shm/clusterchat-bench.XXXXXX)
# Every node and run uses copies taken now: target/ is shared with other work on this machine, and a
# rebuild there in the middle of the run must not change the binary that later nodes start.
cp "$SERVER" "$work/chatserver"
cp "$BENCH" "$work/chat-bench"
SERVER=$work/chatserver
BENCH=$work/chat-bench
original_maps=$(sysctl -n vm.max_map_count)
NODE_PIDS=()
cleanup() {
    trap - EXIT INT TERM
    stop_nodes
    services_stop
    if [ "$(sysctl -n vm.max_map_count)" != "$original_maps" ]; then
        sysctl -qw vm.max_map_count="$original_maps" && log "vm.max_map_count restored to $original_maps"
    fi
    rm -rf "$work" "$shm"
}
trap cleanup EXIT INT TERM

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
# What was built: the commit, and source files that differed from it (other work in progress).
{
    git rev-parse --short HEAD
    git status --porcelain -- src Cargo.toml Cargo.lock sql | awk '{ print $2 }' | tr '\n' ' '
} >"$RESULTS/build.txt" 2>/dev/null || true

# Each connection is two sockets in the bench (reader and writer halves) and two threads in the server.
ulimit -n "$(ulimit -Hn)"
# The server sizes its connection limit from vm.max_map_count (about 4 maps per thread, 2 threads per
# connection): Linux's default 65,530 allows about 7,900 connections, short of the 8,000 target.
if [ "$original_maps" -lt "$MAP_COUNT" ]; then
    if [ "$(id -u)" = 0 ]; then
        say "raising vm.max_map_count from $original_maps to $MAP_COUNT (as root, for the idle scenario; restored at exit)"
        sysctl -qw vm.max_map_count="$MAP_COUNT"
    else
        say "not root: vm.max_map_count stays $original_maps, the node will refuse connections past its ceiling"
    fi
fi

# Starts a node: node_start NAME DATABASE_URL [FLAGS...]; sets NODE_ADDR and NODE_PID. A port that
# looked free may still be taken (thousands of bench connections leave ports in TIME_WAIT): try others.
# The binary is $SERVER (SERVER=PATH node_start ... for another one).
node_start() {
    local name=$1 db=$2
    shift 2
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        NODE_ADDR=127.0.0.1:$port
        local cmd=("$SERVER" --listen "$NODE_ADDR" --database "$db" --node-id "$name" "$@")
        RUST_LOG=warn "${cmd[@]}" 2>"$work/$name.log" &
        NODE_PID=$!
        NODE_PIDS+=("$NODE_PID")
        if wait_port "$port" "$name" && kill -0 "$NODE_PID" 2>/dev/null; then
            printf '%s\n' "${cmd[*]}" >"$RESULTS/$name.server.txt"
            log "$name on $NODE_ADDR (pid $NODE_PID): ${cmd[*]}"
            return 0
        fi
        node_stop "$NODE_PID"
        log "$name did not start on port $port (attempt $attempt): $(tail -c 300 "$work/$name.log")"
    done
    return 1
}

# Stops one node (SIGTERM, then SIGKILL after 10 s).
node_stop() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        node_stop "$pid"
    done
    NODE_PIDS=()
}

# Runs one measurement: bench NAME ARGS...; keeps the command, the table, the JSON line and the load
# average before and after (this machine is shared).
bench() {
    local name=$1
    shift
    say "$name: chat-bench $*"
    printf '%s\n' "chat-bench $*" >"$RESULTS/$name.cmd"
    cut -d' ' -f1-3 /proc/loadavg >"$RESULTS/$name.load"
    if ! "$BENCH" "$@" >"$RESULTS/$name.out"; then
        cut -d' ' -f1-3 /proc/loadavg >>"$RESULTS/$name.load"
        log "$name failed"
        cat "$RESULTS/$name.out" >&2
        return 0
    fi
    cut -d' ' -f1-3 /proc/loadavg >>"$RESULTS/$name.load"
    grep -v '^{' "$RESULTS/$name.out" >&2 || true
    grep '^{' "$RESULTS/$name.out" | tail -1 >"$RESULTS/$name.json"
}

started=$(date +%s)
cut -d' ' -f1-3 /proc/loadavg >"$RESULTS/loadavg.txt"

# MariaDB and Redis start first, before thousands of bench connections make free ports hard to find;
# they idle until the runs that use them.
say "private MariaDB and Redis (used by the later runs)"
# MariaDB as the README tells a deployment to run it: a buffer pool and a redo log of 1 GiB each
# (Debian's defaults are 128 and 96 MiB; the larger redo log halves MariaDB's own CPU at 10,000 msg/s:
# docs/BENCHMARKS.md, "MariaDB at 10,000 msg/s, and with a larger buffer pool"). MARIADB_ARGS= (empty)
# measures the defaults.
export MARIADB_ARGS=${MARIADB_ARGS---innodb-buffer-pool-size=1G --innodb-log-file-size=1G}
printf '%s\n' "$MARIADB_ARGS" >"$RESULTS/mariadb.options.txt"
mariadb_start "$work"
mariadb --no-defaults -S "$MARIADB_SOCKET" -u root -e \
    "CREATE DATABASE bench CHARACTER SET utf8mb4; CREATE DATABASE bench2 CHARACTER SET utf8mb4"
redis_start "$work"

# The durable log (issue 10): with OLD_SERVER, the one-to-one sweep on that binary and on this one in
# alternating rounds (fresh nodes, own files); acknowledged v2 sends with resends and bytes per stored
# message on a fresh SQLite node; a new device's sync of SYNC_PEERS x SYNC_PER_PEER messages.
durable_runs() {
    say "the durable log (issue 10)"
    if [ -n "$OLD_SERVER" ]; then
        printf '%s\n' "${OLD_COMMIT:-$OLD_SERVER}" >"$RESULTS/compare-old.commit"
        printf '%s\n' "$CMP_CPU_RATE" >"$RESULTS/compare-cpu-rate.txt"
        local round which
        for round in $(seq 1 "$CMP_ROUNDS"); do
            for which in old new; do
                if [ "$which" = old ]; then
                    SERVER=$OLD_SERVER node_start "cmp-$which-$round" "sqlite://$work/cmp-$which-$round.db" "${CHEAP[@]}"
                else
                    node_start "cmp-$which-$round" "sqlite://$work/cmp-$which-$round.db" "${CHEAP[@]}"
                fi
                bench "compare-$which-$round" one --addr "$NODE_ADDR" --users "$USERS" --sweep "$CMP_SWEEP" \
                    --duration "$STEP_S" --server-pid "$NODE_PID" --label "$which"
                node_stop "$NODE_PID"
            done
        done
    fi
    node_start ack-sqlite "sqlite://$work/ack.db" "${CHEAP[@]}"
    bench ack-sqlite one --ack --addr "$NODE_ADDR" --users "$USERS" --sweep "$ACK_SWEEP" --duration "$STEP_S" \
        --sqlite-db "$work/ack.db" --server-pid "$NODE_PID" --label ack-sqlite
    node_stop "$NODE_PID"
    node_start sync-sqlite "sqlite://$work/sync.db" "${CHEAP[@]}"
    bench sync-sqlite sync --addr "$NODE_ADDR" --peers "$SYNC_PEERS" --per-peer "$SYNC_PER_PEER" \
        --sqlite-db "$work/sync.db" --server-pid "$NODE_PID" --label sqlite
    node_stop "$NODE_PID"
}

if [ -z "$DURABLE_ONLY" ]; then
    say "single node, embedded SQLite"
    node_start sqlite "sqlite://$work/bench.db" "${CHEAP[@]}"
    bench one-sqlite one --addr "$NODE_ADDR" --users "$USERS" --sweep "$ONE_SWEEP" --duration "$STEP_S" \
        --server-pid "$NODE_PID" --label sqlite
    bench group-sqlite group --addr "$NODE_ADDR" --users "$USERS" --group-size 20 --sweep "$GROUP_SWEEP" \
        --duration "$STEP_S" --server-pid "$NODE_PID" --label sqlite
    node_stop "$NODE_PID"

fi
durable_runs
if [ -z "$DURABLE_ONLY" ]; then
    # A flood from one connection beside the one-to-one load, in alternating rounds so that drift of the
    # shared machine hits all three alike: quiet, a flood of unknown requests, a flood of chat to an offline user.
    node_start flood "sqlite://$work/flood.db" "${CHEAP[@]}"
    for round in $(seq 1 "$FLOOD_ROUNDS"); do
        bench "flood-quiet-$round" one --addr "$NODE_ADDR" --users "$USERS" --rate "$FLOOD_LOAD" \
            --duration "$STEP_S" --server-pid "$NODE_PID" --label quiet
        for kind in unknown chat; do
            bench "flood-$kind-$round" one --addr "$NODE_ADDR" --users "$USERS" --rate "$FLOOD_LOAD" \
                --duration "$STEP_S" --server-pid "$NODE_PID" --flood-rate "$FLOOD_RATE" --flood-kind "$kind" \
                --label "flood-$kind"
        done
    done
    node_stop "$NODE_PID"
    # The same with the database in memory (tmpfs): what the chat flood costs others apart from the disk.
    node_start flood-tmpfs "sqlite://$shm/flood.db" "${CHEAP[@]}"
    for round in $(seq 1 "$FLOOD_ROUNDS"); do
        bench "flood-tmpfs-quiet-$round" one --addr "$NODE_ADDR" --users "$USERS" --rate "$FLOOD_LOAD" \
            --duration "$STEP_S" --server-pid "$NODE_PID" --label tmpfs-quiet
        bench "flood-tmpfs-chat-$round" one --addr "$NODE_ADDR" --users "$USERS" --rate "$FLOOD_LOAD" \
            --duration "$STEP_S" --server-pid "$NODE_PID" --flood-rate "$FLOOD_RATE" --flood-kind chat \
            --label tmpfs-flood-chat
    done
    node_stop "$NODE_PID"

    node_start idle "sqlite://$work/idle.db" "${CHEAP[@]}"
    bench idle-sqlite idle --addr "$NODE_ADDR" --users "$IDLE_USERS" --duration "$STEP_S" \
        --login-concurrency 64 --server-pid "$NODE_PID" --label sqlite
    node_stop "$NODE_PID"

    node_start storm "sqlite://$work/storm.db" "${CHEAP[@]}"
    bench storm-sqlite login-storm --addr "$NODE_ADDR" --users "$STORM_USERS" --login-concurrency 128 \
        --server-pid "$NODE_PID" --label sqlite
    bench storm-tokens-sqlite login-storm --addr "$NODE_ADDR" --users "$STORM_USERS" --login-concurrency 128 \
        --use-tokens --server-pid "$NODE_PID" --label sqlite-tokens
    node_stop "$NODE_PID"

    node_start storm-strong "sqlite://$work/strong.db"
    bench storm-strong-sqlite login-storm --addr "$NODE_ADDR" --users "$STRONG_STORM_USERS" \
        --login-concurrency 128 --server-pid "$NODE_PID" --label sqlite-default-argon2
    node_stop "$NODE_PID"

else
    say "single node, embedded SQLite: group chat"
    node_start sqlite "sqlite://$work/bench.db" "${CHEAP[@]}"
    bench group-sqlite group --addr "$NODE_ADDR" --users "$USERS" --group-size 20 --sweep "$GROUP_SWEEP" \
        --duration "$STEP_S" --server-pid "$NODE_PID" --label sqlite
    node_stop "$NODE_PID"
    # The MariaDB one-to-one run only needs its p99 at 10,000 msg/s here.
    MYSQL_SWEEP=${DURABLE_MYSQL_SWEEP:-10000}
fi

say "single node, MariaDB"
node_start mariadb "$MARIADB_URL/bench" "${CHEAP[@]}"
bench one-mariadb one --addr "$NODE_ADDR" --users "$USERS" --sweep "$MYSQL_SWEEP" --duration "$STEP_S" \
    --server-pid "$NODE_PID" --label mariadb
bench ack-mariadb one --ack --addr "$NODE_ADDR" --users "$USERS" --sweep "$ACK_MYSQL_SWEEP" \
    --duration "$STEP_S" --server-pid "$NODE_PID" --label ack-mariadb
[ -n "$DURABLE_ONLY" ] || bench storm-mariadb login-storm --addr "$NODE_ADDR" --users 2000 --login-concurrency 128 \
    --server-pid "$NODE_PID" --label mariadb
node_stop "$NODE_PID"

if [ -z "$DURABLE_ONLY" ]; then
    say "two nodes, MariaDB + Redis, every message crossing nodes"
    node_start node-a "$MARIADB_URL/bench2" --redis "$REDIS_URL" "${CHEAP[@]}"
    addr_a=$NODE_ADDR pid_a=$NODE_PID
    node_start node-b "$MARIADB_URL/bench2" --redis "$REDIS_URL" "${CHEAP[@]}"
    addr_b=$NODE_ADDR pid_b=$NODE_PID
    bench one-cross one --addr "$addr_a,$addr_b" --cross-node --users "$USERS" --sweep "$CROSS_SWEEP" \
        --duration "$STEP_S" --server-pid "$pid_a,$pid_b" --label cross-node
    stop_nodes

fi

if [ -n "$DURABLE_ONLY" ]; then
    cut -d' ' -f1-3 /proc/loadavg >>"$RESULTS/loadavg.txt"
    bash bench/durable-splice.sh "$RESULTS"
    say "rewrote the durable log section of docs/BENCHMARKS.md in $(($(date +%s) - started)) s"
    exit 0
fi

say "plot"
plot_inputs=()
for f in one-sqlite one-mariadb one-cross; do
    [ -s "$RESULTS/$f.json" ] && plot_inputs+=(--input "$RESULTS/$f.json")
done
if [ ${#plot_inputs[@]} -gt 0 ]; then
    "$BENCH" plot "${plot_inputs[@]}" --output docs/latency-vs-rate.svg
fi

cut -d' ' -f1-3 /proc/loadavg >>"$RESULTS/loadavg.txt"
bash bench/report.sh "$RESULTS" "$(($(date +%s) - started))" >"$work/generated.md"
# Sections by hand (and by the presence and WebSocket scripts) are not in report.sh's output: keep them.
python3 bench/keep-sections.py docs/BENCHMARKS.md "$work/generated.md" bench/notes.md >"$work/page.md"
cp "$work/page.md" docs/BENCHMARKS.md
say "wrote docs/BENCHMARKS.md and docs/latency-vs-rate.svg in $(($(date +%s) - started)) s"
