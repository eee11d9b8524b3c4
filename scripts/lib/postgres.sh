# shellcheck shell=bash
# Throwaway PostgreSQL servers for tests and the demo. Source this file, then:
#   pg_start NAME          initdb + start on a free loopback port; sets NAME_DIR, NAME_PORT, NAME_URL
#   pg_stop NAME           stop that server and delete its files
#   pg_server DIR PORT stop|start|freeze|thaw
#                          stop or start a server again, or freeze (SIGSTOP) and thaw (SIGCONT) the
#                          postmaster and every backend (outage and chaos tests; scripts/pg-control.sh)
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
        # From /, which the postgres user can enter: run from a root-only directory (a clone under
        # /root, say), pg_ctl and initdb print "could not change directory" warnings. Every path
        # given is absolute.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_server() {
    local dir=$1 port=$2 action=$3 bin
    bin=$(pg_bin_dir) || return 2
    case "$action" in
        stop) pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
        start)
            pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
                -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
            ;;
        # A frozen server keeps its sockets: the kernel still accepts connections and answers
        # keepalive probes, but nothing is read or answered until the thaw.
        freeze | thaw)
            local signal=STOP pid
            [ "$action" = thaw ] && signal=CONT
            pid=$(head -n 1 "$dir/data/postmaster.pid") || return 1
            kill "-$signal" "$pid"
            pkill "-$signal" -P "$pid" || true
            ;;
        *) echo "usage: pg_server DIR PORT stop|start|freeze|thaw" >&2; return 2 ;;
    esac
}

pg_start() {
    local name=${1:?usage: pg_start NAME} bin dir port
    bin=$(pg_bin_dir) || return 2
    dir=$(mktemp -d /tmp/decryptd-pg.XXXXXX)
    port=$(pg_free_port)
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    pg_server "$dir" "$port" start || { cat "$dir/server.log" >&2; return 1; }
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres decryptd
    declare -g "${name}_DIR=$dir" "${name}_PORT=$port" "${name}_URL=postgresql://postgres@127.0.0.1:$port/decryptd"
    echo "postgres: throwaway server $name on 127.0.0.1:$port ($dir)"
}

pg_stop() {
    local name=${1:?usage: pg_stop NAME} dir_var port_var
    dir_var="${name}_DIR"
    port_var="${name}_PORT"
    local dir=${!dir_var:-} port=${!port_var:-}
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    pg_server "$dir" "$port" stop 2>/dev/null || true
    rm -rf "$dir"
    echo "postgres: $name stopped and removed"
}

# pg_enable_tls NAME: makes server NAME (already started by pg_start) accept TLS with a certificate
# for 127.0.0.1 and localhost from a throwaway CA, and sets NAME_TLS_URL (sslmode=verify-full,
# that CA) and NAME_WRONG_CA (another CA's certificate, which must be refused).
pg_enable_tls() {
    local name=${1:?usage: pg_enable_tls NAME} dir_var port_var
    dir_var="${name}_DIR"
    port_var="${name}_PORT"
    local dir=${!dir_var} port=${!port_var} tls
    tls=$dir/tls
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=decryptd test CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
        -keyout "$tls/wrong-ca.key" -out "$tls/wrong-ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
        -extfile "$tls/san.ext" -out "$tls/server.crt" 2>/dev/null
    chmod 644 "$tls"/*.crt
    chmod 600 "$tls/server.key"
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$tls"; fi
    pg_server "$dir" "$port" stop
    printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" "$tls/server.crt" "$tls/server.key" >>"$dir/data/postgresql.conf"
    pg_server "$dir" "$port" start || { cat "$dir/server.log" >&2; return 1; }
    declare -g "${name}_TLS_URL=postgresql://postgres@127.0.0.1:$port/decryptd?sslmode=verify-full&sslrootcert=$tls/ca.crt"
    declare -g "${name}_WRONG_CA=$tls/wrong-ca.crt"
    echo "postgres: $name accepts TLS (sslmode=verify-full against $tls/ca.crt)"
}
