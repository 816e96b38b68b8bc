#!/usr/bin/env bash
# Where a node's time goes under one-to-one load: bench/profile.sh NAME SERVER_BINARY RATE [chat-bench flags]
# Starts a fresh node (SQLite in $DBDIR, default a temp dir; with MARIADB=1 a private MariaDB from
# integration/services.sh), runs `chat-bench one --users 1000 --rate RATE --duration 25` against it, and
# from 8 s to 18 s of the load takes: `perf record -F 499 -g` of the node (PERF=0 skips it), the storage it
# wrote (/proc/PID/io write_bytes), the CPU of its log-writer thread and of the whole node (and mariadbd's),
# each per message. PERF=writer records only the log-writer thread, with DWARF call graphs: a release
# build has no frame pointers, so `-g` loses the Rust callers that say where in the log's work the time
# went. Output in $OUT (default /tmp/clusterchat-profile/NAME.*); everything on 127.0.0.1.
#   bench/profile.sh new ./target/release/chatserver 5000
#   DBDIR=/dev/shm bench/profile.sh new-tmpfs ./target/release/chatserver 5000
#   MARIADB=1 bench/profile.sh new-mariadb ./target/release/chatserver 7500 --ack
set -uo pipefail
cd "$(dirname "$0")/.."
name=$1 server=$2 rate=$3
shift 3
OUT=${OUT:-/tmp/clusterchat-profile}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/clusterchat-profile.XXXXXX)
dbdir=${DBDIR:-$work}
source integration/services.sh
set +e
node=
cleanup() { [ -n "$node" ] && kill "$node" 2>/dev/null; services_stop; rm -rf "$work"; rm -f "$dbdir/$name".db*; }
trap cleanup EXIT
if [ -n "${MARIADB:-}" ]; then
    mariadb_start "$work"
    mariadb --no-defaults -S "$MARIADB_SOCKET" -u root -e "CREATE DATABASE prof CHARACTER SET utf8mb4"
    db="$MARIADB_URL/prof"
else
    db="sqlite://$dbdir/$name.db"
fi
port=$(free_port)
RUST_LOG=warn "$server" --listen "127.0.0.1:$port" --database "$db" --node-id "$name" \
    --argon2-memory-kib 64 --argon2-iterations 1 2>"$OUT/$name.log" &
node=$!
wait_port "$port" "$name" || exit 1
mysqld_pid=$([ -n "${MARIADB:-}" ] && pgrep -n -f "mariadbd.*$work" || true)
./target/release/chat-bench one --addr "127.0.0.1:$port" --users 1000 --rate "$rate" --duration 25 \
    --server-pid "$node" --label "$name" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
bench=$!
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
writer() {
    local t
    for t in /proc/"$node"/task/*; do
        [ "$(cat "$t/comm")" = log-writer ] && cut -d')' -f2- "$t/stat" | awk '{ print $12 + $13 }'
    done
    return 0
}
written() { awk '/^write_bytes/ { print $2 }' "/proc/$node/io"; }
sleep 8
n0=$(ticks "$node") l0=$(writer) w0=$(written) m0=$([ -n "$mysqld_pid" ] && ticks "$mysqld_pid" || echo 0)
if [ "${PERF:-1}" = 1 ]; then
    perf record -F 499 -g -p "$node" -o "$OUT/$name.perf" -- sleep 10 >/dev/null 2>&1
elif [ "${PERF:-1}" = writer ]; then
    tid=$(grep -lx log-writer /proc/"$node"/task/*/comm | head -1 | cut -d/ -f5)
    perf record -F 499 --call-graph dwarf,16384 -t "$tid" -o "$OUT/$name.perf" -- sleep 10 >/dev/null 2>&1
else
    sleep 10
fi
n1=$(ticks "$node") l1=$(writer) w1=$(written) m1=$([ -n "$mysqld_pid" ] && ticks "$mysqld_pid" || echo 0)
wait "$bench"
hz=$(getconf CLK_TCK)
msgs=$((rate * 10))
LC_ALL=C awk -v n=$((n1 - n0)) -v l=$((l1 - l0)) -v m=$((m1 - m0)) -v w=$((w1 - w0)) -v hz="$hz" -v msgs="$msgs" \
    -v name="$name" -v loadavg="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    printf "%s: per message over 10 s: node %.1f us CPU (log-writer %.1f us), storage written %.0f B", name,
        n * 1e6 / hz / msgs, l * 1e6 / hz / msgs, w / msgs
    if (m > 0) printf ", mariadbd %.1f us CPU", m * 1e6 / hz / msgs
    printf "; load average %s\n", loadavg }' | tee "$OUT/$name.summary"
grep -v '^{' "$OUT/$name.out" | tail -3
[ "${PERF:-1}" != 0 ] && echo "profile: perf report -i $OUT/$name.perf --no-children --sort comm; perf report -i $OUT/$name.perf --children --sort symbol"
exit 0
