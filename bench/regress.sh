#!/usr/bin/env bash
# The figures of docs/BENCHMARKS.md besides the one-to-one sweep, for two or more server binaries in
# alternating rounds, so that a change to the chat path can show it costs nothing elsewhere:
#   bench/regress.sh ROUNDS BINARY...      e.g. bench/regress.sh 2 /tmp/chatserver-before ./target/release/chatserver
# Per round and binary, each on a fresh node (SQLite in a temp dir unless said; cheap argon2): group chat
# (groups of 20, $GROUP_SWEEP), acknowledged v2 sends ($ACK_SWEEP), a new device's sync (100 x 100), a
# login storm of $STORM_USERS users (passwords, then resume tokens), $IDLE_USERS idle connections, a chat
# flood from one connection beside one-to-one load at $FLOOD_LOAD msg/s (quiet first), and one-to-one across
# two nodes on a private MariaDB and Redis ($CROSS_SWEEP). One line per run with its figures; every JSON
# line is kept in $OUT (default /tmp/clusterchat-regress). CHAT_BENCH names the tool (default
# ./target/release/chat-bench). Everything listens on 127.0.0.1 and is stopped at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh
set +e # a failed run still lets the others go on
rounds=$1
shift
bench=${CHAT_BENCH:-./target/release/chat-bench}
OUT=${OUT:-/tmp/clusterchat-regress}
GROUP_SWEEP=${GROUP_SWEEP:-2632,3500,5000}
ACK_SWEEP=${ACK_SWEEP:-5000,7500,10000,12500}
CROSS_SWEEP=${CROSS_SWEEP:-2500,5000,7500,10000}
FLOOD_LOAD=${FLOOD_LOAD:-5000}
STORM_USERS=${STORM_USERS:-8000}
IDLE_USERS=${IDLE_USERS:-8000}
CHEAP=(--argon2-memory-kib 64 --argon2-iterations 1)
mkdir -p "$OUT"
work=$(mktemp -d /tmp/clusterchat-regress.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    services_stop
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
[ "$(sysctl -n vm.max_map_count)" -ge 262144 ] || sysctl -qw vm.max_map_count=262144
mariadb_start "$work" >/dev/null
redis_start "$work" >/dev/null

# node BINARY NAME DATABASE [FLAGS...]: starts a node, sets ADDR and PID.
node() {
    local bin=$1 name=$2 db=$3
    shift 3
    local port
    port=$(free_port)
    ADDR=127.0.0.1:$port
    RUST_LOG=warn "$bin" --listen "$ADDR" --database "$db" --node-id "$name" "${CHEAP[@]}" "$@" \
        2>"$work/$name.log" &
    PID=$!
    pids+=("$PID")
    wait_port "$port" "$name"
}

stop() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
}

# run TAG ARGS...: chat-bench ARGS, its last JSON line to $OUT/TAG.json.
run() {
    local tag=$1
    shift
    "$bench" "$@" 2>/dev/null | grep '^{' | tail -1 >"$OUT/$tag.json"
}

fresh_db() { # a new MariaDB database, its URL on stdout
    local name=r$RANDOM$RANDOM
    mariadb --no-defaults -S "$MARIADB_SOCKET" -u root -e "CREATE DATABASE $name CHARACTER SET utf8mb4"
    printf '%s/%s\n' "$MARIADB_URL" "$name"
}

for r in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        b=$(basename "$bin")
        t="$b-r$r"
        d="$work/$t"
        mkdir -p "$d"
        node "$bin" group "sqlite://$d/group.db"
        run "$t-group" group --addr "$ADDR" --users 1000 --group-size 20 --sweep "$GROUP_SWEEP" --duration 10 \
            --server-pid "$PID"
        stop "$PID"
        node "$bin" ack "sqlite://$d/ack.db"
        run "$t-ack" one --ack --addr "$ADDR" --users 1000 --sweep "$ACK_SWEEP" --duration 10 --server-pid "$PID"
        stop "$PID"
        node "$bin" sync "sqlite://$d/sync.db"
        run "$t-sync" sync --addr "$ADDR" --peers 100 --per-peer 100 --sqlite-db "$d/sync.db" --server-pid "$PID"
        stop "$PID"
        node "$bin" storm "sqlite://$d/storm.db"
        run "$t-storm" login-storm --addr "$ADDR" --users "$STORM_USERS" --login-concurrency 128 --server-pid "$PID"
        run "$t-storm-tokens" login-storm --addr "$ADDR" --users "$STORM_USERS" --login-concurrency 128 \
            --use-tokens --server-pid "$PID"
        stop "$PID"
        node "$bin" idle "sqlite://$d/idle.db"
        run "$t-idle" idle --addr "$ADDR" --users "$IDLE_USERS" --duration 10 --login-concurrency 64 --server-pid "$PID"
        stop "$PID"
        node "$bin" flood "sqlite://$d/flood.db"
        run "$t-flood-quiet" one --addr "$ADDR" --users 1000 --rate "$FLOOD_LOAD" --duration 10 --server-pid "$PID"
        run "$t-flood-chat" one --addr "$ADDR" --users 1000 --rate "$FLOOD_LOAD" --duration 10 --server-pid "$PID" \
            --flood-rate 10000 --flood-kind chat
        stop "$PID"
        db=$(fresh_db)
        node "$bin" cross-a "$db" --redis "$REDIS_URL"
        a=$ADDR pa=$PID
        node "$bin" cross-b "$db" --redis "$REDIS_URL"
        run "$t-cross" one --addr "$a,$ADDR" --cross-node --users 1000 --sweep "$CROSS_SWEEP" --duration 10 \
            --server-pid "$pa,$PID"
        stop "$pa" "$PID"
        rm -rf "$d"
        python3 - "$OUT" "$t" <<'PY'
import json, sys
out, t = sys.argv[1:]
def load(kind):
    try:
        return json.loads(open(f"{out}/{t}-{kind}.json").read())
    except (OSError, ValueError):
        return None
def best(run, key):
    if not run:
        return "-"
    passed = [s for s in run.get("steps", [run]) if s.get("passed")]
    return f"{max(s[key] for s in passed):.0f}" if passed else "none"
def f(run, key, fmt="{:.1f}"):
    return fmt.format(run[key]) if run and run.get(key) is not None else "-"
g, a, s, st, tk, i, q, fc, x = (load(k) for k in
    ["group", "ack", "sync", "storm", "storm-tokens", "idle", "flood-quiet", "flood-chat", "cross"])
print(f"{t:28} group={best(g, 'deliveries_per_s')}/s ack={best(a, 'rate')}/s sync={f(s, 'sync_s', '{:.2f}')}s "
      f"storm={f(st, 'storm_s', '{:.2f}')}s tokens={f(tk, 'storm_s', '{:.2f}')}s idle={f(i, 'server_rss_mb')}MiB "
      f"quiet_p99={f(q, 'p99_ms', '{:.2f}')}ms flood_p99={f(fc, 'p99_ms', '{:.2f}')}ms cross={best(x, 'rate')}/s")
PY
    done
done
