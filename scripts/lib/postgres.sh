# shellcheck shell=bash
# A throwaway PostgreSQL cluster for tests and the demo. Source this file, then:
#   pg_start   initdb + start on a free loopback port; exports DATABASE_URL and PG_* variables
#   pg_stop    stop the server and delete its files
#   pg_server stop|start   stop or start the same server again (outage tests)
# Works as root (the server runs as the postgres user; initdb refuses root) and as non-root.

pg_bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] || { echo "postgres: no PostgreSQL server binaries under /usr/lib/postgresql (run scripts/setup.sh)" >&2; return 2; }
    echo "$dir"
}

pg_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_server() {
    case "$1" in
        stop) pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null ;;
        start)
            pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
                -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
            ;;
        *) echo "usage: pg_server stop|start" >&2; return 2 ;;
    esac
}

pg_start() {
    PG_BIN=$(pg_bin_dir) || return 2
    PG_DIR=$(mktemp -d /tmp/decryptd-pg.XXXXXX)
    PG_PORT=$(pg_free_port)
    chmod 755 "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; fi
    pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    pg_server start || { cat "$PG_DIR/server.log" >&2; return 1; }
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres decryptd
    export PG_BIN PG_DIR PG_PORT
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/decryptd"
    echo "postgres: throwaway server on 127.0.0.1:$PG_PORT ($PG_DIR)"
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ] || return 0
    pg_server stop 2>/dev/null || true
    rm -rf "$PG_DIR"
    echo "postgres: stopped and removed"
}
