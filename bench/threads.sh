#!/usr/bin/env bash
# Where a node's CPU goes, per thread name: bench/threads.sh SERVER_BINARY RATE [chat-bench flags]
#   bench/threads.sh ./target/release/chatserver 20000
# Starts a fresh node on a temp SQLite file, runs `chat-bench one --users 1000 --rate RATE --duration 25`
# against it and, from 8 s to 18 s of the load, sums each thread's run time (/proc/PID/task/*/schedstat)
# by thread name; prints microseconds per message for each name and in all, then chat-bench's step line.
# schedstat counts time on a CPU as the scheduler sees it, which on this VM comes out about 1.5 times
# the utime + stime of /proc/PID/stat that chat-bench's cpu_us reports: compare names and binaries
# within this script's output, not with cpu_us.
set -uo pipefail
cd "$(dirname "$0")/.."
server=$1 rate=$2
shift 2
source integration/services.sh # free_port, wait_port
dir=$(mktemp -d /tmp/clusterchat-threads.XXXXXX)
port=$(free_port)
RUST_LOG=warn "$server" --listen "127.0.0.1:$port" --database "sqlite://$dir/bench.db" --node-id threads \
    --argon2-memory-kib 64 --argon2-iterations 1 2>"$dir/log" &
node=$!
trap 'kill "$node" 2>/dev/null; rm -rf "$dir"' EXIT
wait_port "$port" threads || exit 1
./target/release/chat-bench one --addr "127.0.0.1:$port" --users 1000 --rate "$rate" --duration 25 \
    --server-pid "$node" "$@" >"$dir/out.json" 2>/dev/null &
bench=$!
snapshot() {
    for t in /proc/"$node"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(cut -d' ' -f1 "$t/schedstat")"
    done | awk '{ ns[$1] += $2 } END { for (n in ns) print n, ns[n] }' | sort
}
sleep 8
snapshot >"$dir/before"
sleep 10
snapshot >"$dir/after"
wait "$bench"
join "$dir/before" "$dir/after" | awk -v msgs=$((rate * 10)) '
    { us = ($3 - $2) / 1000 / msgs; total += us; if (us >= 0.05) printf "%-16s %6.1f us/msg\n", $1, us }
    END { printf "%-16s %6.1f us/msg\n", "all threads", total }'
python3 bench/steps.py "${server##*/}" "$dir/out.json"
