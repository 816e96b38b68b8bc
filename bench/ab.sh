#!/usr/bin/env bash
# Alternating A/B of server binaries, one-to-one on a fresh SQLite node per run:
#   bench/ab.sh ROUNDS SWEEP BINARY...      e.g. bench/ab.sh 3 5000,10000,15000 /tmp/chatserver-a /tmp/chatserver-b
# Each round runs every binary once, in the order given: a node on a new temp database (cheap argon2), then
# `chat-bench one --users 1000 --sweep SWEEP --duration 10` against it (the sweep stops at the first rate
# that fails). One line per binary, round and rate: server CPU per message, context switches per message,
# p99 and whether the step passed. CHAT_BENCH names the tool (default ./target/release/chat-bench); the
# databases go under TMPDIR (default /tmp; TMPDIR=/dev/shm takes the disk out of the figures). BENCH_ARGS
# adds flags to every run (BENCH_ARGS=--ack: acknowledged v2 sends with resends; the lines then also give
# the ack p99 and the resends). SCENARIO names another chat-bench scenario than `one` (SCENARIO=group
# BENCH_ARGS="--group-size 20"). RENICE=-10 renices the node's log threads (log-writer, log-landed,
# wal-checkpoint) a second after start: how a binary from before src/priority.rs compares with one after.
set -uo pipefail
source "$(dirname "$0")/../integration/services.sh" # free_port
set +e # a failed step still lets the other runs go on
rounds=$1 sweep=$2
shift 2
bench=${CHAT_BENCH:-./target/release/chat-bench}
for r in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        dir=$(mktemp -d "${TMPDIR:-/tmp}/ab.XXXXXX")
        port=$(free_port)
        RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" --database "sqlite://$dir/bench.db" --node-id ab \
            --argon2-memory-kib 64 --argon2-iterations 1 >"$dir/log" 2>&1 &
        pid=$!
        sleep 1
        if [ -n "${RENICE:-}" ]; then
            for t in /proc/"$pid"/task/*; do
                case "$(cat "$t/comm")" in
                log-writer | log-landed | wal-checkpoint) renice -n "$RENICE" -p "${t##*/}" >/dev/null ;;
                esac
            done
        fi
        "$bench" ${SCENARIO:-one} --addr "127.0.0.1:$port" --users 1000 --sweep "$sweep" --duration 10 \
            --server-pid "$pid" ${BENCH_ARGS:-} >"$dir/out.json" 2>/dev/null
        kill "$pid"
        wait "$pid" 2>/dev/null
        python3 "$(dirname "$0")/steps.py" "$(printf '%-24s r%s' "${bin##*/}" "$r")" "$dir/out.json"
        rm -rf "$dir"
    done
done
