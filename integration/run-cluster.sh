#!/usr/bin/env bash
# `make run-cluster`: a real three-node cluster on this machine, for a person to use. Private MariaDB and
# Redis (installed from Debian packages when missing), three chatserver nodes (each with its HTTP
# listener: web client, /ws, probes, metrics), and nginx in front, plain and with TLS (a self-signed
# certificate made in the temp dir). Everything lives in a temp dir and stops on Ctrl-C.
#
# Environment (for each port: a free one is taken when that one is busy):
#   NODES=3              how many chatserver nodes
#   FRONT_PORT=6000      nginx's port for the chat protocol (TCP)
#   TLS_PORT=6443        the same over TLS
#   HTTP_PORT=8080       nginx's port for the web client and WebSocket, plain HTTP
#   HTTPS_PORT=8443      the same over TLS
#   CLUSTER_BIN_DIR=DIR  use the chatserver and chat binaries in DIR as they are and skip
#                        `cargo build --release` (tests use the debug ones: CLUSTER_BIN_DIR=target/debug)
#
# Stopping: Ctrl-C, SIGINT, SIGTERM, SIGHUP or SIGQUIT to this script or to the `make` running it, or
# a write to a closed stdout pipe, all stop every service it started and remove the temp dir, once, and
# the script then dies of that signal (so that make or a calling shell sees the interrupt). The pieces:
#   - A shell that starts a job in the background ignores SIGINT and SIGQUIT in it, and bash cannot
#     trap a signal ignored at entry, so the script then runs itself again with them at their defaults.
#   - GNU make, sent SIGINT (or SIGHUP or SIGQUIT) alone, passes nothing on to its child and waits for
#     it for ever. Nothing reaches the child then (no signal, no closed pipe, and PR_SET_PDEATHSIG
#     would only cover make dying), so a watcher polls make: make resets a signal it caught to its
#     default while handling it, which shows in /proc/PID/status (SigCgt), and the watcher then sends
#     this script the same signal. It also stops the script when make is gone (SIGKILL). make does pass
#     SIGTERM on, but only to its direct child, which is why the Makefile recipe stays a simple command
#     that make runs without a /bin/sh in between.
#   - The cleanup ignores SIGPIPE and write errors, so that `make run-cluster | tee log` stopped by
#     Ctrl-C (which kills tee first) still stops everything.
# A signal sent to the script alone while it starts up takes effect once the command it is running
# then (cargo build, mariadb-install-db) has finished; Ctrl-C stops those too.
set -euo pipefail

# Prints the /proc/PID/status signal mask $2 (SigIgn or SigCgt) of process $1 as a number, or
# nothing when the process is gone.
sigmask() {
    local key value
    { while read -r key value; do
        if [ "$key" = "$2:" ]; then
            echo $((16#$value))
            return 0
        fi
    done <"/proc/$1/status"; } 2>/dev/null || true
}

# Prints the parent pid of process $1, or nothing when it is gone.
ppid_of() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 0
    stat=${stat##*) } # after the command name, which may hold spaces
    # shellcheck disable=SC2086 # split into fields
    set -- $stat
    echo "$2"
}

# SIGINT is signal 2, SIGQUIT 3: bits 1 and 2 of the mask.
ignored=$(sigmask $$ SigIgn)
if [ -z "${CLUSTERCHAT_RUN_CLUSTER_REEXEC:-}" ] && ((${ignored:-0} & 0x6)); then
    # Only these two: a SIGHUP or SIGTERM ignored at entry was meant (nohup), not a background job's.
    export CLUSTERCHAT_RUN_CLUSTER_REEXEC=1
    exec env --default-signal=INT,QUIT bash "$0" "$@"
fi
unset CLUSTERCHAT_RUN_CLUSTER_REEXEC

cd "$(dirname "$0")/.."
source integration/services.sh

NODES=${NODES:-3}
FRONT_PORT=${FRONT_PORT:-6000}
TLS_PORT=${TLS_PORT:-6443}
HTTP_PORT=${HTTP_PORT:-8080}
HTTPS_PORT=${HTTPS_PORT:-8443}

work=""
stopped=""
watcher=""
sleeper=""
# Stops everything and removes the temp dir, once, whatever the state of stdout.
stop_all() {
    [ -z "$stopped" ] || return 0
    stopped=1
    trap '' PIPE
    set +e
    [ -z "$watcher" ] || kill "$watcher" 2>/dev/null
    [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null
    echo 2>/dev/null
    log "stopping"
    services_stop
    [ -z "$work" ] || rm -rf "$work"
}
# Runs on a stop signal: stops everything (not interrupted by more of them), then dies of the signal.
on_signal() {
    trap '' HUP INT QUIT TERM
    stop_all
    if [ "$1" = QUIT ]; then
        exit 131 # not by SIGQUIT, which would dump core
    fi
    trap - "$1"
    kill -s "$1" $$
    exit 1
}
trap stop_all EXIT
for sig in HUP INT QUIT TERM PIPE; do
    # shellcheck disable=SC2064 # $sig now
    trap "on_signal $sig" "$sig"
done

# When make runs the script, forwards to it the signals make gets but does not pass on (see above).
parent=$PPID
parent_comm=$(cat "/proc/$parent/comm" 2>/dev/null || true)
if [ "$parent_comm" = make ] || [ "$parent_comm" = gmake ]; then
    script=$$
    # Which of SIGHUP, SIGINT, SIGQUIT and SIGTERM (bits 0, 1, 2 and 14) make catches now.
    caught=$(sigmask "$parent" SigCgt)
    caught=$((${caught:-0} & 0x4007))
    (
        trap - HUP INT QUIT TERM PIPE EXIT
        while sleep 1; do
            now=$(sigmask "$parent" SigCgt)
            if [ -z "$now" ] || [ "$(ppid_of "$script")" != "$parent" ]; then
                kill -s TERM "$script" 2>/dev/null || true
                exit 0
            fi
            for sig in HUP:0x1 INT:0x2 QUIT:0x4 TERM:0x4000; do
                if ((caught & ${sig#*:})) && ! ((now & ${sig#*:})); then
                    kill -s "${sig%:*}" "$script" 2>/dev/null || true
                    exit 0
                fi
            done
        done
    ) &
    watcher=$!
fi

services_install mariadb redis nginx
bin=${CLUSTER_BIN_DIR:-./target/release}
if [ -z "${CLUSTER_BIN_DIR:-}" ]; then
    cargo build --release --bins
fi

work=$(mktemp -d /tmp/clusterchat-cluster.XXXXXX)

mariadb_start "$work"
mariadb --no-defaults -S "$MARIADB_SOCKET" -u root -e "CREATE DATABASE chat CHARACTER SET utf8mb4"
redis_start "$work"

backends=""
http_backends=""
for n in $(seq 1 "$NODES"); do
    port=$(free_port)
    http_port=$(free_port)
    "$bin/chatserver" --listen "127.0.0.1:$port" --http "127.0.0.1:$http_port" --node-id "node$n" \
        --database "$MARIADB_URL/chat" --redis "$REDIS_URL" --trusted-proxies 127.0.0.1 2>"$work/node$n.log" &
    SERVICES_PIDS+=($!)
    wait_port "$port" "node$n" || { cat "$work/node$n.log" >&2; exit 1; }
    wait_port "$http_port" "node$n (HTTP)" || { cat "$work/node$n.log" >&2; exit 1; }
    backends+="${backends:+,}127.0.0.1:$port"
    http_backends+="${http_backends:+,}127.0.0.1:$http_port"
    log "node$n on 127.0.0.1:$port, HTTP on 127.0.0.1:$http_port (log: $work/node$n.log)"
done

# The port in variable $1, or a free one when something listens there.
port_or_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/${!1}") 2>/dev/null; then
        printf -v "$1" %s "$(free_port)"
    fi
}
for var in FRONT_PORT TLS_PORT HTTP_PORT HTTPS_PORT; do
    port_or_free "$var"
done
tls_cert_make "$work"
nginx_start "$work" listen="127.0.0.1:$FRONT_PORT" tls_listen="127.0.0.1:$TLS_PORT" \
    http_listen="127.0.0.1:$HTTP_PORT" https_listen="127.0.0.1:$HTTPS_PORT" \
    cert="$TLS_CERT" key="$TLS_KEY" tcp="$backends" http="$http_backends"

cat <<MSG

clusterchat cluster is up: $NODES nodes behind nginx.
Web client (and WebSocket on /ws):
    http://127.0.0.1:$HTTP_PORT/
    https://127.0.0.1:$HTTPS_PORT/    (self-signed certificate: $TLS_CERT)
Chat protocol (TCP) on 127.0.0.1:$FRONT_PORT, over TLS on 127.0.0.1:$TLS_PORT. Connect clients with:
    $bin/chat --server 127.0.0.1:$FRONT_PORT
Logs: $work/node*.log    Press Ctrl-C to stop everything.
MSG

# In the background, so that a signal runs its trap at once (bash runs traps between commands).
while true; do
    sleep 3600 &
    sleeper=$!
    wait "$sleeper"
done
