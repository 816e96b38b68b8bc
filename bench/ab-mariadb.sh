#!/usr/bin/env bash
# Alternating A/B of server binaries on a private MariaDB (integration/services.sh), one-to-one then
# acknowledged v2 sends with resends, a fresh database and node per run:
#   bench/ab-mariadb.sh ROUNDS SWEEP BINARY...     e.g. bench/ab-mariadb.sh 2 5000,7500,10000 /tmp/a /tmp/b
# One line per binary, round, mode and rate: server CPU and context switches per message, delivery and ack
# p99, the CPU neither node nor tool used (MariaDB's, mostly) and whether the step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh
set +e
rounds=$1 sweep=$2
shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/ab-mariadb.XXXXXX")
trap 'services_stop; rm -rf "$work"' EXIT
mariadb_start "$work" >/dev/null
for r in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        for mode in one ack; do
            name=ab$RANDOM$RANDOM
            mariadb --no-defaults -S "$MARIADB_SOCKET" -u root -e "CREATE DATABASE $name CHARACTER SET utf8mb4"
            port=$(free_port)
            RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" --database "$MARIADB_URL/$name" --node-id ab \
                --argon2-memory-kib 64 --argon2-iterations 1 2>"$work/node.log" &
            pid=$!
            wait_port "$port" node >/dev/null 2>&1
            flags=()
            [ "$mode" = ack ] && flags=(--ack)
            ./target/release/chat-bench one "${flags[@]}" --addr "127.0.0.1:$port" --users 1000 --sweep "$sweep" \
                --duration 10 --server-pid "$pid" 2>/dev/null >"$work/out.json"
            kill "$pid"
            wait "$pid" 2>/dev/null
            python3 bench/steps.py "$(printf '%-24s r%s %s' "${bin##*/}" "$r" "$mode")" "$work/out.json"
        done
    done
done
