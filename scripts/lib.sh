# shellcheck shell=bash
# Shared by the scripts in scripts/ (sourced, not run): the repository root, .env loading, the
# defaults of the local run, the state directory and small helpers.
#
# Variables that steer the scripts (all optional):
#   EVENTS_STATE_DIR  where `make` keeps the local cluster, pid files and logs (default .local)
#   EVENTS_DB         auto (Docker when `docker info` answers, else local binaries), docker, local
#   PG_BINDIR         directory of initdb/pg_ctl/postgres when they are not found on their own
#   CARGO_TARGET_DIR  where cargo builds (the harness binary pg_cluster among them)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
me=${me:-$(basename "$0")}

say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { say "$*"; exit 1; }

# Loads a dotenv file without overriding variables that are already set: the same rule as the
# binaries (dotenvy) and db_init_script.sh, so every part of `make` sees the same values.
load_dotenv() {
    local file=$1 line name value
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        name=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
        [[ -n ${!name+set} ]] && continue
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
        export "$name=$value"
    done <"$file"
}

# The port of the database that `make` starts when DB_PORT is set nowhere: 5433, not 5432, so
# it never collides with a PostgreSQL the machine already runs on the standard port.
readonly local_db_port_default=5433

# Creates .env from .env.template when it is missing, so DB_PASSWORD is set. The copy also pins
# DB_PORT, so binaries started by hand reach the same database as `make`.
ensure_dotenv() {
    [[ -f $repo/.env ]] && return 0
    [[ -f $repo/.env.template ]] || die ".env and .env.template are both missing"
    {
        cat "$repo/.env.template"
        printf '\n# Added by make: the database that make starts listens here (5433 keeps clear of a\n'
        printf '# PostgreSQL already running on 5432).\nDB_PORT=%s\n' "$local_db_port_default"
    } >"$repo/.env"
    say "created .env from .env.template (DB_PASSWORD=change-me, DB_PORT=$local_db_port_default); edit it to change them"
}

# Loads .env and exports the settings every script uses, with the defaults of the local run.
load_settings() {
    load_dotenv "$repo/.env"
    export DB_HOST=${DB_HOST:-localhost}
    export DB_PORT=${DB_PORT:-$local_db_port_default}
    export DB_USER=${DB_USER:-postgres}
    export DB_NAME=${DB_NAME:-events}
    export CONSUMER_PORT=${CONSUMER_PORT:-8080}
    # The propagator follows the consumer when only CONSUMER_PORT was changed, over HTTPS when
    # the consumer serves it (localhost: the name a certificate for this machine carries).
    if consumer_tls; then
        export PROPAGATOR_ENDPOINT=${PROPAGATOR_ENDPOINT:-https://localhost:$CONSUMER_PORT/event}
    else
        export PROPAGATOR_ENDPOINT=${PROPAGATOR_ENDPOINT:-http://127.0.0.1:$CONSUMER_PORT/event}
    fi
    [[ $DB_PORT =~ ^[0-9]+$ ]] || die "DB_PORT '$DB_PORT' is not a port number"
    [[ $CONSUMER_PORT =~ ^[0-9]+$ ]] || die "CONSUMER_PORT '$CONSUMER_PORT' is not a port number"

    state=${EVENTS_STATE_DIR:-$repo/.local}
    [[ $state == /* ]] || state=$PWD/$state
    # As root the cluster runs as the postgres user, which must be able to enter the state
    # directory. A clone under a closed directory (such as /root) keeps its state in /var/tmp
    # instead: the same place on every run, so the data still survives between runs.
    if [[ -z ${EVENTS_STATE_DIR:-} ]] && [[ $(id -u) == 0 ]] && id postgres >/dev/null 2>&1 &&
        ! pg_cluster can-enter "$repo" 2>/dev/null; then
        state=/var/tmp/event-system-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)
    fi
    export EVENTS_STATE_DIR=$state
    # shellcheck disable=SC2034 # used by the scripts that source this file
    run_dir=$state/run log_dir=$state/logs
}

# True when the settings turn on the consumer's HTTPS (config.yaml: consumer.tls_cert_file).
consumer_tls() {
    [[ -n ${CONSUMER_TLS_CERT_FILE:-} || -n ${CONSUMER_TLS_KEY_FILE:-} ]]
}

# Prints the HTTP status code of GET http://host:port/path, or nothing when there is no answer.
http_status() {
    local host=$1 port=$2 path=$3
    (
        exec 3<>"/dev/tcp/$host/$port" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$host" "$port" >&3
        IFS=' ' read -r -t 3 _ code _ <&3 || exit 1
        printf '%s\n' "$code"
    ) 2>/dev/null || true
}

# Prints the HTTP status code of GET https://host:port/path, or nothing when there is no
# answer, with curl: the server's certificate is checked against the CA file, and a client
# certificate is presented when one is given (for a consumer with consumer.tls_client_ca_file).
https_status() {
    local host=$1 port=$2 path=$3 ca=$4 cert=${5:-} key=${6:-}
    local client=()
    [[ -n $cert ]] && client=(--cert "$cert" --key "$key")
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 3 --cacert "$ca" "${client[@]}" \
        "https://$host:$port$path" 2>/dev/null | grep -v '^000$' || true
}

# Makes a throwaway PKI in DIR with openssl: a CA (ca.pem, ca.key), a server certificate for
# localhost and 127.0.0.1 (server.pem, server.key) and a client certificate (client.pem,
# client.key; CN events-client). ECDSA P-256 keys, as the test PKI of the test suites
# (test_support/src/pki.rs, rcgen's default), valid for 30 days (under 14 the consumer logs an
# expiry warning at start); the files live as long as DIR.
make_test_pki() {
    local dir=$1 name ext
    command -v openssl >/dev/null || die "openssl not found: install it (Debian/Ubuntu: apt-get install openssl)"
    mkdir -p "$dir"
    (
        cd "$dir" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
            -keyout ca.key -out ca.pem -subj "/CN=events throwaway CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        for name in server client; do
            if [[ $name == server ]]; then
                ext="subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
            else
                ext="extendedKeyUsage=clientAuth"
            fi
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$name.key" -out "$name.csr" -subj "/CN=events-$name"
            # shellcheck disable=SC2059 # the extensions are the format: \n separates them
            openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -out "$name.pem" -extfile <(printf "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n$ext\n")
        done
        rm -f ./*.csr ca.srl
    ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl could not make the throwaway certificates in $dir"; }
}

# True when the process exists and is not a zombie (an exited process whose parent has not
# collected it yet, such as an orphaned postmaster that init has not reaped).
alive() {
    local stat
    [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
    # read, not $(<file): bash exits on a $(<file) whose file vanished (the process just ended)
    # even in a condition, under set -e.
    if { read -r stat <"/proc/$1/stat"; } 2>/dev/null; then
        stat=${stat##*) }
        [[ ${stat%% *} != Z ]]
    fi
}

# A background child is not deaf to the terminal's signals from its first instant: between the
# fork and the point where bash ignores SIGINT in it (and until its own `trap ''` for TERM and
# HUP), a signal sent to the process group (Ctrl-C, a second one, make's SIGINT) kills it. Under
# a SIGINT every 10 ms, 10 to 13 of 400 plain `( trap '' INT TERM HUP; ... ) &` children died so
# (scripts/fork-window.sh). Once, that cut a stop of PostgreSQL before it began, and make left
# the server running. Bash may also act later on a SIGINT it caught in that window, so a child
# counts as started only once it has exec'd with the signals ignored: `marked` creates a marker
# then, and the parent starts a child that ended before again. The parent's traps stay as they
# are: no signal is lost.
# EVENTS_TEST_BEFORE_DEAF (for `make smoke` only): a command the child runs first, with $name and
# the command line in "$@": the window cannot be hit on purpose, so the test ends the child there.

# marked MARKER CMD...: (in the child, after its `trap ''`) execs CMD through sh, which creates
# MARKER first.
marked() {
    local marker=$1
    shift
    exec sh -c ': >"$0" && exec "$@"' "$marker" "$@"
}

# armed MARKER PID: waits until child PID created MARKER; false when it died first. Builtins
# only; kill -0 suffices, as bash reaps its own children as they end.
armed() {
    while [[ ! -e $1 ]]; do
        kill -0 "$2" 2>/dev/null || { [[ -e $1 ]] && return 0 || return 1; }
    done
}

# deaf_child MARKER SIGNALS CMD...: the child's side: the test hook, SIGNALS ignored, then CMD
# through `marked`.
deaf_child() {
    local marker=$1 signals=$2
    shift 2
    if [[ -n ${EVENTS_TEST_BEFORE_DEAF:-} ]]; then eval "$EVENTS_TEST_BEFORE_DEAF" || true; fi
    # shellcheck disable=SC2086 # a list of signal names
    trap '' $signals
    marked "$marker" "$@"
}

# deaf_start [--pipe] NAME SIGNALS CMD...: CMD in the background with SIGNALS ("INT HUP")
# ignored, and its pid in deaf_pid. With --pipe, CMD reads a pipe whose write end is the file
# descriptor deaf_fd. NAME names the marker in $run_dir.
deaf_start() {
    local pipe=
    if [[ $1 == --pipe ]]; then
        pipe=1
        shift
    fi
    local name=$1 marker=$run_dir/$1.armed signals=$2 tries=0
    shift 2
    while :; do
        ((++tries <= 100)) || die "cannot start the $name ($1): it ended before it ran, 100 times (can $run_dir be written?)"
        rm -f "$marker"
        if [[ -n $pipe ]]; then
            exec {deaf_fd}> >(deaf_child "$marker" "$signals" "$@")
        else
            deaf_child "$marker" "$signals" "$@" &
        fi
        deaf_pid=$!
        armed "$marker" "$deaf_pid" && break
        if [[ -n $pipe ]]; then exec {deaf_fd}>&-; fi
        wait "$deaf_pid" 2>/dev/null || true
    done
    rm -f "$marker"
}

# The exactly-once check of chaos.sh and ha.sh, run in a work directory that holds the
# propagators' keys logs in keys/*.keys (each key written before its event's first send).
# The caller defines `sql` (psql -qAt against the events database to check). Leaves the lists
# in the directory (generated, lost, strangers: rows with a key in no log, repeated: keys stored
# more than once) and sets n_generated, n_rows, lost_n, strangers_n, repeated_n, duplicated,
# stored (distinct logged keys found), log_dups (keys a log repeats: a propagator bug) and
# stall (the longest time in seconds without a new row: gaps between consecutive rows'
# received_at, the database's clock at each transaction, exact rather than sampled).
# shellcheck disable=SC2034 # the results are for the scripts that source this file
keys_vs_table() {
    local extra_rows
    cat keys/*.keys | sort >generated
    sort -u generated >generated.unique
    sql -F ' ' -c "SELECT coalesce(idempotency_key, '<null>'), count(*) FROM events GROUP BY 1" |
        sort >stored.counts
    cut -d' ' -f1 stored.counts >stored.keys
    n_generated=$(wc -l <generated)
    n_rows=$(sql -c 'SELECT count(*) FROM events')
    comm -23 generated.unique stored.keys >lost
    comm -13 generated.unique stored.keys >strangers
    awk '$2 > 1' stored.counts >repeated
    lost_n=$(wc -l <lost)
    strangers_n=$(wc -l <strangers)
    repeated_n=$(wc -l <repeated)
    extra_rows=$(awk '$2 > 1 { n += $2 - 1 } END { print n + 0 }' stored.counts)
    duplicated=$((repeated_n + strangers_n))
    stored=$((n_rows - extra_rows - strangers_n))
    log_dups=$(uniq -d generated | wc -l)
    stall=$(sql -c "SELECT coalesce(round(extract(epoch FROM max(gap))::numeric, 3), 0) FROM (
        SELECT received_at - lag(received_at) OVER (ORDER BY received_at, id) AS gap FROM events) g")
}

# Waits for the propagators of chaos.sh and ha.sh (pids in the array propagator_pid, logs in
# $work/logs/propagator-J.log) to exit, at most SECONDS + 120 s from now (they stop starting
# sends at --duration and finish what is in flight, retries included); one still running then
# is stopped. Sets failed_propagators to the number that did not exit 0 (or ALSO_OK: 3 for
# propagators with a spool, which exit 3 when events stay in it) (each reported).
# shellcheck disable=SC2154 # propagator_pid and work belong to the script that calls it
wait_for_propagators() { # SECONDS [ALSO_OK]
    local j code deadline=$((SECONDS + $1 + 120)) also_ok=${2:-0}
    failed_propagators=0
    for j in "${!propagator_pid[@]}"; do
        while alive "${propagator_pid[j]}" && ((SECONDS < deadline)); do sleep 0.2; done
        if alive "${propagator_pid[j]}"; then
            say "propagator $j still running 120 s after its duration: stopping it"
            kill -TERM "${propagator_pid[j]}" 2>/dev/null || true
        fi
        code=0
        wait "${propagator_pid[j]}" || code=$?
        if ((code != 0 && code != also_ok)); then
            failed_propagators=$((failed_propagators + 1))
            say "propagator $j exited $code; the end of its log:"
            tail -n 5 "$work/logs/propagator-$j.log" >&2
        fi
    done
}

# The inodes of the sockets that listen on TCP port $1 (IPv4 and IPv6, any address), one a
# line, from /proc/net/tcp{,6}: the local address ends in :PORT in hex, state 0A is LISTEN.
listening_inodes() {
    local hex
    printf -v hex '%04X' "$1"
    awk -v port=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# The inodes of the sockets process $1 holds open, one a line.
socket_inodes_of() {
    local fd target
    for fd in /proc/"$1"/fd/*; do
        target=$(readlink "$fd" 2>/dev/null) || continue
        [[ $target =~ ^socket:\[([0-9]+)\]$ ]] && printf '%s\n' "${BASH_REMATCH[1]}"
    done
}

# "PID (command line)" of every process that holds a socket listening on TCP port $1 and is not
# process $2, one a line; nothing when none is visible (another user's processes are visible to
# root only). Listeners whose owner cannot be seen are named by their socket inode.
foreign_listeners() {
    local port=$1 mine=${2:-} inode p pid seen=
    local -A ours=()
    if [[ -n $mine ]]; then
        for inode in $(socket_inodes_of "$mine"); do ours[$inode]=1; done
    fi
    for inode in $(listening_inodes "$port"); do
        [[ -n ${ours[$inode]:-} ]] && continue
        seen=
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [[ $pid == "$mine" ]] && continue
            if [[ -n $(find "$p/fd" -maxdepth 1 -lname "socket:\\[$inode\\]" -print -quit 2>/dev/null) ]]; then
                printf 'pid %s (%s)\n' "$pid" "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-160 | sed 's/ $//')"
                seen=1
                break
            fi
        done
        [[ -n $seen ]] || printf 'a process this user cannot see (socket inode %s)\n' "$inode"
    done | sort -u
}

# True when process $1 holds a socket listening on TCP port $2.
listens_on() {
    local pid=$1 port=$2 inode
    local -A ours=()
    for inode in $(socket_inodes_of "$pid"); do ours[$inode]=1; done
    for inode in $(listening_inodes "$port"); do
        [[ -n ${ours[$inode]:-} ]] && return 0
    done
    return 1
}

# The pid stored in a pid file, if that process still runs.
live_pid() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(<"$1")
    alive "$pid" && printf '%s\n' "$pid"
}

# psql against the configured database; the password comes from DB_PASSWORD.
db_psql() {
    PGHOST=$DB_HOST PGPORT=$DB_PORT PGUSER=$DB_USER PGPASSWORD=${DB_PASSWORD:-} \
        PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-3} PGAPPNAME=$me psql -X "$@"
}

require_psql() {
    command -v psql >/dev/null || die "psql not found: install the PostgreSQL client" \
        "(Debian/Ubuntu: apt-get install postgresql-client; Fedora: dnf install postgresql;" \
        "macOS: brew install libpq)"
}

# Waits until the server accepts our login, up to $1 seconds.
wait_for_db() {
    local deadline=$((SECONDS + $1)) out
    until out=$(db_psql -d postgres -qtA -c 'SELECT 1' 2>&1); do
        if ((SECONDS >= deadline)); then
            die "PostgreSQL at $DB_HOST:$DB_PORT did not accept a login within $1 s: ${out#psql: error: }"
        fi
        sleep 0.5
    done
}

# Whether a Docker engine answers, not just the client.
docker_engine() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1
}

# The test harness's pg_cluster (test_support/src/bin/pg_cluster.rs): the one implementation of
# finding the server binaries, running them as `postgres` when root, picking and checking free
# ports and starting throwaway clusters, shared with the test suites. Built in release on first
# use (a no-op of a fraction of a second when it is fresh); call need_pg_cluster at the top level
# of a script so its subshells ($(pg_cluster ...)) do not each ask cargo again.
need_pg_cluster() {
    [[ -n ${pg_cluster_bin:-} ]] && return 0
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$repo/$target
    # A build from scratch takes a while and cargo -q says nothing: one line says what it does.
    local stale=
    if [[ ! -x $target/release/pg_cluster ]] ||
        [[ -n $(find "$repo/test_support" "$repo/Cargo.lock" -newer "$target/release/pg_cluster" \
            \( -name '*.rs' -o -name '*.toml' -o -name Cargo.lock \) -print -quit 2>/dev/null) ]]; then
        stale=1
        say "building the PostgreSQL harness (cargo build --release -p test_support --bin pg_cluster)"
    fi
    (cd "$repo" && cargo build --release -q -p test_support --bin pg_cluster) >&2 ||
        die "cannot build the PostgreSQL harness (cargo build --release -p test_support --bin pg_cluster)"
    # Cargo leaves the binary as it was when nothing it depends on changed (a Cargo.lock that
    # changed elsewhere, a touched file): mark it checked, or the line above would come back on
    # every call.
    if [[ -n $stale ]]; then touch "$target/release/pg_cluster"; fi
    pg_cluster_bin=$target/release/pg_cluster
}
pg_cluster() {
    need_pg_cluster
    "$pg_cluster_bin" "$@"
}

# Starts a throwaway cluster in DIR (created when missing; further pg_cluster start options
# after DIR: --port P, --fsync on|off) and sets cluster_port, cluster_bindir, cluster_data,
# cluster_log and cluster_url from what pg_cluster prints.
start_cluster() {
    local dir=$1 out key value
    shift
    out=$(pg_cluster start --dir "$dir" "$@") || die "cannot start a PostgreSQL cluster in $dir (the reason is above)"
    # shellcheck disable=SC2034 # used by the scripts that source this file
    while IFS='=' read -r key value; do
        case $key in
        port) cluster_port=$value ;;
        bindir) cluster_bindir=$value ;;
        data) cluster_data=$value ;;
        log) cluster_log=$value ;;
        url) cluster_url=$value ;;
        esac
    done <<<"$out"
    [[ -n ${cluster_port:-} ]] || die "pg_cluster start printed no port"
}

# True when something holds PORT on loopback, so a server could not listen there.
port_in_use() {
    ! pg_cluster port-free "$1"
}

readonly install_hint="Install one of them:
  - Docker Engine with the compose plugin (https://docs.docker.com/engine/install/), started, or
  - the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql postgresql-client;
    Fedora: dnf install postgresql-server postgresql; macOS: brew install postgresql@15),
    or point PG_BINDIR at the directory holding initdb, pg_ctl and postgres."

# Which database `make` runs: docker or local (EVENTS_DB=auto|docker|local).
choose_db_mode() {
    case ${EVENTS_DB:-auto} in
    docker)
        docker_engine || die "EVENTS_DB=docker but no Docker engine answers ('docker info' fails)"
        echo docker
        ;;
    local)
        pg_cluster bindir >/dev/null 2>&1 || die "EVENTS_DB=local but no PostgreSQL server binaries were found. $install_hint"
        echo local
        ;;
    auto)
        if docker_engine; then
            echo docker
        elif pg_cluster bindir >/dev/null 2>&1; then
            echo local
        else
            die "neither a Docker engine ('docker info' fails) nor PostgreSQL server binaries" \
                "(initdb, pg_ctl) were found. $install_hint"
        fi
        ;;
    *) die "EVENTS_DB='$EVENTS_DB': use auto, docker or local" ;;
    esac
}

# The end of the database scripts (local-pg.sh, docker-pg.sh): runs the function named by $2 when
# it is one of the words of $1, else prints the usage and exits 2.
run_command() {
    local commands=$1 command=${2:-}
    if [[ -n $command && " $commands " == *" $command "* ]]; then
        "$command"
    else
        echo "usage: $me ${commands// /|}" >&2
        exit 2
    fi
}

# Refuses DB_HOST values that are not this machine: `make` starts the database itself.
require_local_db_host() {
    case $DB_HOST in
    localhost | 127.0.0.1 | ::1) ;;
    *) die "DB_HOST=$DB_HOST: make starts its own database on this machine; unset DB_HOST" \
        "(or set it to localhost) in .env or the environment" ;;
    esac
}
