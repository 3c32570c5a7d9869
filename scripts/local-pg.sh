#!/usr/bin/env bash
# The local PostgreSQL cluster of `make` when no Docker engine answers: start | stop | status | clean.
#
# The cluster lives in $EVENTS_STATE_DIR/pg (default .local/pg, git-ignored) and survives between
# runs; `clean` deletes it. It is created with the password of DB_USER from .env (initdb
# --pwfile), scram-sha-256 authentication, listens on localhost:DB_PORT (default 5433) and keeps
# its Unix socket in its own directory, so it never touches a system PostgreSQL.
# PostgreSQL refuses to run as root, so as root the server binaries run as the `postgres` user
# (the harness's pg_cluster exec does that, the same code the tests use).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
need_pg_cluster

cluster=$state/pg
data=$cluster/data

# The server binaries, run as `postgres` when we are root, from / (which that user can always
# enter): the harness's code (lib.sh's pg_cluster), the same the tests and chaos use.
pg() {
    pg_cluster exec "$@"
}

find_binaries() {
    bindir=$(pg_cluster bindir) || die "no PostgreSQL server binaries (initdb, pg_ctl) were found. $install_hint"
}

# 0 running, 3 not running, 4 no cluster (pg_ctl's codes). Any other answer stops the script
# with pg_ctl's words: taken for "not running", it would let `stop` leave a server running.
server_state() {
    [[ -f $data/PG_VERSION ]] || return 4
    local rc=0 out
    out=$(pg pg_ctl -D "$data" status 2>&1) || rc=$?
    case $rc in
    0 | 3) return "$rc" ;;
    esac
    die "cannot tell whether PostgreSQL runs in $data: pg_ctl status exited with $rc: ${out//$'\n'/ }"
}

# The port the running server listens on (line 4 of postmaster.pid).
running_port() {
    sed -n 4p "$data/postmaster.pid" 2>/dev/null
}

init_cluster() {
    [[ -n ${DB_PASSWORD:-} ]] || die "DB_PASSWORD is not set: set it in .env (see .env.template)"
    mkdir -p "$cluster"
    chmod 700 "$cluster"
    pg_cluster own "$cluster" || die "cannot give $cluster to the server's user"
    pg_cluster can-enter "$cluster" ||
        die "set EVENTS_STATE_DIR to a directory the postgres user can reach, e.g. EVENTS_STATE_DIR=/var/tmp/events-local"
    local pwfile=$cluster/initdb-password log=$cluster/initdb.log
    (umask 077 && printf '%s\n' "$DB_PASSWORD" >"$pwfile")
    pg_cluster own "$pwfile" || die "cannot give $pwfile to the server's user"
    say "creating a PostgreSQL cluster in $data (initdb; user $DB_USER, password from DB_PASSWORD)"
    # Into a side directory, renamed when complete: an interrupted initdb leaves no half cluster.
    rm -rf "$data.initdb"
    if ! pg initdb -D "$data.initdb" -U "$DB_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
        -E UTF8 --no-locale >"$log" 2>&1; then
        rm -f "$pwfile"
        cat "$log" >&2
        rm -rf "$data.initdb"
        die "initdb failed (output above)"
    fi
    rm -f "$pwfile"
    mv "$data.initdb" "$data"
    # Connections over TCP and the socket both need the password (scram-sha-256, set above).
    cat >>"$data/postgresql.conf" <<EOF

# Added by scripts/local-pg.sh. The port comes from DB_PORT at each start (pg_ctl -o -p).
listen_addresses = 'localhost'
unix_socket_directories = '$cluster'
EOF
}

start() {
    find_binaries
    local rc=0
    server_state || rc=$?
    if ((rc == 0)); then
        if [[ $(running_port) == "$DB_PORT" ]]; then
            say "PostgreSQL in $data is already running on port $DB_PORT"
            return 0
        fi
        say "PostgreSQL in $data runs on port $(running_port), DB_PORT is $DB_PORT: restarting it"
        stop
    fi
    if port_in_use "$DB_PORT"; then
        die "port $DB_PORT on 127.0.0.1 is already in use by another program (another PostgreSQL?):" \
            "stop it, or set DB_PORT in .env to a free port"
    fi
    if ((rc == 4)); then init_cluster; fi
    say "starting PostgreSQL $(pg postgres --version | awk '{print $3}') from $bindir on localhost:$DB_PORT (log: $cluster/server.log)"
    if ! pg pg_ctl -D "$data" -l "$cluster/server.log" -o "-p $DB_PORT" -w -t 60 start >/dev/null 9>&-; then
        tail -n 20 "$cluster/server.log" >&2 || true
        die "PostgreSQL did not start (the end of $cluster/server.log is above)"
    fi
}

# The command that stops the server when this script cannot (as root: as the postgres user).
stop_command() {
    local cmd="$bindir/pg_ctl -D $data stop -m immediate"
    if [[ $(id -u) == 0 ]]; then cmd="runuser -u postgres -- $cmd"; fi
    printf '%s\n' "$cmd"
}

# Fast shutdown (sessions ended, a clean checkpoint), immediate after 5 s: every wait is
# bounded. Names the server, and the command that stops it, when it outlives both.
stop() {
    find_binaries
    server_state || return 0
    say "stopping PostgreSQL in $data"
    if ! pg pg_ctl -D "$data" -m fast -w -t 5 stop >/dev/null 2>&1; then
        say "PostgreSQL did not stop within 5 s (fast shutdown): stopping it in immediate mode"
        pg pg_ctl -D "$data" -m immediate -w -t 5 stop >/dev/null 2>&1 || true
    fi
    if server_state; then
        local pid
        pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
        die "cannot stop PostgreSQL in $data (postmaster pid ${pid:-?}): run '$(stop_command)'," \
            "or 'kill -9 ${pid:-PID}' (the next start recovers from the log)"
    fi
}

status() {
    find_binaries
    local rc=0
    server_state || rc=$?
    case $rc in
    0) echo "local PostgreSQL: running on port $(running_port), data in $data" ;;
    3) echo "local PostgreSQL: stopped, data in $data" ;;
    *) echo "local PostgreSQL: no cluster in $data (make creates one)" ;;
    esac
    return "$rc"
}

clean() {
    if [[ -d $cluster ]]; then
        if pg_cluster bindir >/dev/null 2>&1; then stop; fi
        rm -rf "$cluster"
        say "removed the local cluster in $cluster"
    fi
}

# One start, stop or clean at a time: `make psql` during `make`'s build and `make` itself would
# otherwise both run initdb on a new cluster. The lock's descriptor is closed for the server
# (pg_ctl start below), which would otherwise hold it for as long as it runs.
case ${1:-} in
start | stop | clean)
    mkdir -p "$state"
    exec 9>"$state/local-pg.lock"
    flock -w 120 9 || die "another start or stop of the local PostgreSQL holds $state/local-pg.lock for over 120 s"
    ;;
esac
run_command "start stop status clean" "${1:-}"
