#!/usr/bin/env bash
# `make run-cluster`: a real three-node cluster on this machine, for a person to use. Private MariaDB and
# Redis (installed from Debian packages when missing), three chatserver nodes, and nginx in front.
# Everything lives in a temp dir and stops on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh

NODES=${NODES:-3}
FRONT_PORT=${FRONT_PORT:-6000}

services_install mariadb redis nginx
cargo build --release --bins

work=$(mktemp -d /tmp/clusterchat-cluster.XXXXXX)
stop_all() {
    trap - EXIT INT TERM
    echo
    log "stopping"
    services_stop
    rm -rf "$work"
}
trap stop_all EXIT INT TERM

mariadb_start "$work"
mariadb --no-defaults -S "$MARIADB_SOCKET" -u root -e "CREATE DATABASE chat CHARACTER SET utf8mb4"
redis_start "$work"

backends=()
for n in $(seq 1 "$NODES"); do
    port=$(free_port)
    ./target/release/chatserver --listen "127.0.0.1:$port" --node-id "node$n" \
        --database "$MARIADB_URL/chat" --redis "$REDIS_URL" 2>"$work/node$n.log" &
    SERVICES_PIDS+=($!)
    wait_port "$port" "node$n" || { cat "$work/node$n.log" >&2; exit 1; }
    backends+=("127.0.0.1:$port")
    log "node$n on 127.0.0.1:$port (log: $work/node$n.log)"
done

if (exec 3<>"/dev/tcp/127.0.0.1/$FRONT_PORT") 2>/dev/null; then
    FRONT_PORT=$(free_port)
fi
nginx_start "$work" "127.0.0.1:$FRONT_PORT" "${backends[@]}"

cat <<MSG

clusterchat cluster is up: $NODES nodes behind nginx on 127.0.0.1:$FRONT_PORT.
Connect clients with:
    ./target/release/chat --server 127.0.0.1:$FRONT_PORT
Logs: $work/node*.log    Press Ctrl-C to stop everything.
MSG

while true; do
    sleep 1
done
