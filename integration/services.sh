#!/usr/bin/env bash
# Private service instances for tests and for `make run-cluster`: installed from Debian packages when
# missing, started on free loopback ports in a temp dir, never touching the machine's own MariaDB or Redis
# (which may run on the standard ports). Source this file, then call the functions.
#
#   services_install mariadb redis nginx chromium   # apt-get install what is missing
#   mariadb_start DIR                      # sets MARIADB_PORT, MARIADB_URL (mysql://chat:chat@127.0.0.1:PORT)
#   redis_start DIR                        # sets REDIS_PORT, REDIS_URL
#   tls_cert_make DIR                      # a self-signed certificate for localhost and 127.0.0.1:
#                                          #   sets TLS_CERT, TLS_KEY (PEM files in DIR/tls)
#   nginx_start DIR KEY=VALUE...           # conf/nginx.conf in front of the nodes (see the function)
#   services_stop                          # stops everything started (also run it from an EXIT trap)

set -euo pipefail

SERVICES_PIDS=()

log() { printf '[services] %s\n' "$*" >&2; }

# Installs the Debian packages for the named services when their binaries are missing.
services_install() {
    local packages=()
    for service in "$@"; do
        case "$service" in
            mariadb) command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || packages+=(mariadb-server mariadb-client) ;;
            redis) command -v redis-server >/dev/null || packages+=(redis-server) ;;
            nginx)
                [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || packages+=(nginx-light libnginx-mod-stream)
                command -v openssl >/dev/null || packages+=(openssl) # certificates for its TLS servers
                ;;
            # The browser tests (integration/browser.rs): Debian's headless-capable Chromium and its
            # WebDriver (nothing is downloaded at test time), and a font for legible screenshots.
            chromium)
                [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || packages+=(chromium chromium-driver)
                [ -d /usr/share/fonts/truetype/dejavu ] || packages+=(fonts-dejavu-core)
                ;;
            *) log "unknown service $service"; return 1 ;;
        esac
    done
    if [ ${#packages[@]} -gt 0 ]; then
        log "installing ${packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
        # Debian starts packaged services on install; ours are private, so leave theirs alone.
    fi
}

# A loopback TCP port nobody listens on.
free_port() {
    # Below the kernel's ephemeral range: a port there may be the local end of someone's connection,
    # which no probe for a listener sees, and binding it then fails.
    local low port
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 12000 ] || low=32768
    while true; do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Waits until something accepts connections on 127.0.0.1:$1.
wait_port() {
    local port=$1 what=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$what did not start listening on port $port"
    return 1
}

# Starts a private MariaDB in $1/mariadb with a user chat/chat that may create databases. One table-cache
# instance: with the default eight, 2,000 connections make it ask for 34,033 open files, more than a usual
# hard limit (20,000), and it warns about that at every start although it needs far fewer. With
# MARIADB_NOSYNC=1 (make test sets it) no fsync (nosync, no doublewrite): a test's data need not survive
# the machine, and each test creates its tables anew, which with fsyncs on a busy disk took a node more
# than 20 s to start. Benchmarks keep the fsyncs. MARIADB_ARGS adds server options (a benchmark's larger
# buffer pool, say: MARIADB_ARGS="--innodb-buffer-pool-size=1G").
mariadb_start() {
    local dir=$1/mariadb sync=()
    [ "${MARIADB_NOSYNC:-0}" = 1 ] && sync=(--innodb-flush-method=nosync --innodb-doublewrite=0)
    mkdir -p "$dir/data"
    local mysqld=/usr/sbin/mariadbd
    [ -x "$mysqld" ] || mysqld=$(command -v mariadbd)
    mariadb-install-db --no-defaults --user=root --datadir="$dir/data" --auth-root-authentication-method=normal \
        --skip-test-db >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; return 1; }
    MARIADB_PORT=$(free_port)
    "$mysqld" --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --port="$MARIADB_PORT" --bind-address=127.0.0.1 \
        --skip-name-resolve --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 "${sync[@]}" \
        --max-connections=2000 --table-open-cache-instances=1 --log-error="$dir/error.log" ${MARIADB_ARGS:-} &
    SERVICES_PIDS+=($!)
    wait_port "$MARIADB_PORT" MariaDB || { cat "$dir/error.log" >&2; return 1; }
    for _ in $(seq 1 100); do
        mariadb --no-defaults -S "$dir/mysqld.sock" -u root -e "SELECT 1" >/dev/null 2>&1 && break
        sleep 0.1
    done
    mariadb --no-defaults -S "$dir/mysqld.sock" -u root -e \
        "CREATE USER 'chat'@'127.0.0.1' IDENTIFIED BY 'chat'; GRANT ALL ON *.* TO 'chat'@'127.0.0.1'; FLUSH PRIVILEGES;"
    MARIADB_SOCKET=$dir/mysqld.sock
    MARIADB_URL="mysql://chat:chat@127.0.0.1:$MARIADB_PORT"
    export MARIADB_PORT MARIADB_URL MARIADB_SOCKET
    log "MariaDB on 127.0.0.1:$MARIADB_PORT (data in $dir)"
}

# Starts a private Redis in $1/redis that keeps nothing on disk.
redis_start() {
    local dir=$1/redis
    mkdir -p "$dir"
    REDIS_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" &
    SERVICES_PIDS+=($!)
    wait_port "$REDIS_PORT" Redis
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    export REDIS_PORT REDIS_URL
    log "Redis on 127.0.0.1:$REDIS_PORT"
}

# Makes a self-signed certificate (P-256, 30 days) for localhost and 127.0.0.1 in $1/tls; sets TLS_CERT
# and TLS_KEY to its PEM files. Clients must be told to trust TLS_CERT itself (e.g. curl --cacert).
tls_cert_make() {
    local dir=$1/tls
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 ||
        { cat "$dir/openssl.log" >&2; return 1; }
    TLS_CERT=$dir/cert.pem
    TLS_KEY=$dir/key.pem
    export TLS_CERT TLS_KEY
}

# The `server` lines of an nginx upstream for the comma-separated addresses $1.
nginx_upstreams() {
    local out="" backend
    for backend in ${1//,/ }; do
        out+="server $backend max_fails=3 fail_timeout=10s; "
    done
    echo "$out"
}

# Starts nginx from conf/nginx.conf in $1/nginx. The other arguments are KEY=VALUE, all required:
#   listen=ADDR        the chat protocol, plain         tls_listen=ADDR    the chat protocol over TLS
#   http_listen=ADDR   web client and /ws, plain HTTP   https_listen=ADDR  web client and /ws over TLS
#   cert=FILE key=FILE the TLS certificate chain and key (PEM)
#   tcp=ADDR,ADDR...   the nodes' chat listeners        http=ADDR,ADDR...  the nodes' HTTP listeners
nginx_start() {
    local dir=$1/nginx
    shift
    local -A opt=()
    local arg key
    for arg in "$@"; do
        opt[${arg%%=*}]=${arg#*=}
    done
    for key in listen tls_listen http_listen https_listen cert key tcp http; do
        [ -n "${opt[$key]:-}" ] || { log "nginx_start: $key= missing"; return 1; }
    done
    mkdir -p "$dir"
    sed -e "s|@RUN_DIR@|$dir|g" -e "s|@LISTEN@|${opt[listen]}|g" -e "s|@TLS_LISTEN@|${opt[tls_listen]}|g" \
        -e "s|@HTTP_LISTEN@|${opt[http_listen]}|g" -e "s|@HTTPS_LISTEN@|${opt[https_listen]}|g" \
        -e "s|@TLS_CERT@|${opt[cert]}|g" -e "s|@TLS_KEY@|${opt[key]}|g" \
        -e "s|@UPSTREAM_SERVERS@|$(nginx_upstreams "${opt[tcp]}")|g" \
        -e "s|@HTTP_UPSTREAM_SERVERS@|$(nginx_upstreams "${opt[http]}")|g" \
        conf/nginx.conf >"$dir/nginx.conf"
    /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/startup-error.log" -g "daemon off;" &
    local pid=$!
    SERVICES_PIDS+=("$pid")
    # The pid file is written once every listener is bound: a port that answers could be someone else's.
    for _ in $(seq 1 100); do
        [ -s "$dir/nginx.pid" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$dir/nginx.pid" ] || { log "nginx did not start"; cat "$dir"/*.log >&2; return 1; }
    log "nginx on ${opt[listen]} (TLS ${opt[tls_listen]}) -> ${opt[tcp]}; HTTP ${opt[http_listen]} (TLS ${opt[https_listen]}) -> ${opt[http]}"
}

# Stops every service this shell started, newest first.
services_stop() {
    local pid i
    for ((i = ${#SERVICES_PIDS[@]} - 1; i >= 0; i--)); do
        kill "${SERVICES_PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${SERVICES_PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    SERVICES_PIDS=()
}
