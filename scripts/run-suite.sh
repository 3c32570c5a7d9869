#!/usr/bin/env bash
# The whole system on this machine, for `make`: run | stop | clean-db.
#
# run: starts PostgreSQL (a container when a Docker engine answers, else a local cluster kept in
#      .local/pg), applies the schema with db_init_script.sh, starts the consumer, waits until its
#      /readyz answers (over HTTPS with PROPAGATOR_TLS_CA_FILE when .env turns on the consumer's
#      TLS) and checks that the socket answering there is the consumer's own, starts the
#      propagator, and streams both services' logs with a prefix (also appended to
#      .local/logs/<service>.log). Ctrl-C, SIGTERM or `make stop` stop the propagator, then the
#      consumer (both within STOP_GRACE_SECONDS, then SIGKILL), then the database. Run `make`
#      (it builds first).
# stop: asks a running `run` to stop and waits for it; stops leftovers when `run` is gone or does
#      not finish, and names what it cannot stop with the command that will.
# clean-db: deletes the local cluster and the container's volume.
#
# The services run in sessions of their own (setsid), so the terminal's Ctrl-C reaches only this
# script, which then stops them one after the other in that order. A signal only sets a flag,
# acted upon between steps, so no step is cut in half (a service started but not yet recorded).
#
# EVENTS_TEST_AFTER_PORT_CHECK (for `make smoke` only): a command run right after the last check
# that CONSUMER_PORT is free, to take the port as another program could at that moment.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

# Seconds the services get to stop after SIGTERM before SIGKILL: their shutdown_timeout_seconds
# (10 in config.yaml) plus a margin. One deadline for both, so a stop never takes longer.
readonly grace=${STOP_GRACE_SECONDS:-15}
[[ $grace =~ ^[0-9]+$ ]] || die "STOP_GRACE_SECONDS='$grace' is not a number of seconds"
readonly target_dir=${CARGO_TARGET_DIR:-target}
# Every so often the run prints how many events the table holds, to show them flowing
# (EVENTS_REPORT_SECONDS=0: never).
readonly report_every=${EVENTS_REPORT_SECONDS:-10}
if [[ -t 1 ]]; then green=$'\e[32m' reset=$'\e[0m'; else green='' reset=''; fi

suite_running() { live_pid "$run_dir/suite.pid"; }

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# Waits up to $2 seconds for process $1 to end; false when it is still there.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$1" || return 0
        sleep 0.1
    done
    ! alive "$1"
}

# What to tell when process $1 (described by $2) outlived SIGKILL: only the kernel holds it.
cannot_stop() {
    say "cannot stop $2 (pid $1, state $(awk '/^State:/ {print $2, $3}' "/proc/$1/status" 2>/dev/null)):" \
        "it outlived SIGKILL, so it waits on the kernel (a hung disk or network mount?); it ends when" \
        "that returns; 'kill -9 $1' again, and 'cat /proc/$1/stack' (as root) shows where it waits"
}

# --- run ----------------------------------------------------------------------------------------

declare -A pids=() prefixers=()
started_db=
sleeper=
shutting_down=
stop_signal=
hurry=

# Copies a service's output to the terminal with a prefix, and to its log file.
prefix_lines() {
    local tag=$1 logfile=$2 line color='' reset=''
    if [[ -t 1 ]]; then
        case $tag in consumer*) color=$'\e[36m' ;; *) color=$'\e[35m' ;; esac
        reset=$'\e[0m'
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        printf '%s%s |%s %s\n' "$color" "$tag" "$reset" "$line"
        printf '%s\n' "$line" >&3
    done 3>>"$logfile"
}

# start_service NAME ARGS...: the service in its own session, its output through a pipe to
# prefix_lines. The pipe exists before either process starts, so neither can block opening it
# (as a FIFO's open could); the prefixer ends when the service's end of the pipe closes. It
# ignores INT and HUP (the terminal's) to print the service's last lines after Ctrl-C, never TERM.
# Both are started by deaf_start (lib.sh): a Ctrl-C at that moment cannot kill either before
# it ignores the signal.
start_service() {
    local name=$1 fd
    shift
    deaf_start --pipe "$name-prefixer" "INT HUP" "$BASH" "$repo/scripts/run-suite.sh" prefix \
        "$(printf '%-10s' "$name")" "$log_dir/$name.log"
    fd=$deaf_fd
    prefixers[$name]=$deaf_pid
    echo "${prefixers[$name]}" >"$run_dir/$name.prefixer.pid"
    deaf_start "$name" "INT HUP" setsid "$@" >&"$fd" 2>&1 </dev/null
    pids[$name]=$deaf_pid
    exec {fd}>&-
    echo "${pids[$name]}" >"$run_dir/$name.pid"
}

# stop_service NAME DEADLINE_MS: SIGTERM, then SIGKILL at the deadline (at once after a further
# signal). Returns the service's exit status. Every wait is bounded.
stop_service() {
    local name=$1 deadline=$2 pid=${pids[$1]:-} rc=0
    if [[ -n $pid ]]; then
        if alive "$pid"; then
            say "stopping the $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            while alive "$pid" && [[ -z $hurry ]] && (($(now_ms) < deadline)); do sleep 0.1; done
            if alive "$pid"; then
                if [[ -n $hurry ]]; then
                    say "a further signal: killing the $name (pid $pid)"
                else
                    say "the $name did not stop within $grace s (STOP_GRACE_SECONDS): killing it"
                fi
                kill -KILL "$pid" 2>/dev/null || true
                wait_gone "$pid" 3 || { cannot_stop "$pid" "the $name"; rc=1; }
            fi
        fi
        # wait only on an ended process: it could block on one that outlived SIGKILL.
        if ! alive "$pid"; then
            wait "$pid" 2>/dev/null || rc=$?
            rm -f "$run_dir/$name.pid"
            say "the $name stopped (exit status $rc)"
        fi
        unset "pids[$name]"
    fi
    # The prefixer ends when the service's output closes; it gets 2 s to print the last lines.
    local ppid=${prefixers[$name]:-}
    if [[ -n $ppid ]]; then
        if ! wait_gone "$ppid" 2; then
            kill -TERM "$ppid" 2>/dev/null || true
            wait_gone "$ppid" 1 || kill -KILL "$ppid" 2>/dev/null || true
        fi
        unset "prefixers[$name]"
        rm -f "$run_dir/$name.prefixer.pid"
    fi
    return "$rc"
}

# Propagator, consumer, database: each only if it was started. A further signal only hurries it.
shutdown() {
    local failed=0 deadline
    [[ -n $shutting_down ]] && return 0
    shutting_down=1
    trap 'hurry=1' INT TERM HUP
    if [[ -n $sleeper ]]; then kill "$sleeper" 2>/dev/null || true; fi
    deadline=$(($(now_ms) + grace * 1000))
    stop_service propagator "$deadline" || true
    stop_service consumer "$deadline" || failed=1
    if [[ -n $started_db ]]; then
        db_script "$started_db" stop || failed=1
    fi
    rm -f "$run_dir/db-mode" "$run_dir/suite.pid"
    return "$failed"
}

# db_script MODE start|stop: the database script in a session of its own, so that the terminal's
# Ctrl-C cannot cut a start (initdb, pg_ctl start) or a stop in half, which would leave a half
# cluster or a server nobody knows to stop. Both are bounded (pg_ctl -t); a signal is acted upon
# right after. The waiting `setsid` ignores the signals too (deaf_start, lib.sh): killed by a
# Ctrl-C sent to make's process group, it would return at once and make would exit while the
# database still stops, or, killed before the script began, leave the database running.
db_script() {
    local pid rc rc2
    deaf_start db "INT TERM HUP" setsid -w "scripts/$1-pg.sh" "$2"
    pid=$deaf_pid
    # A trapped signal ends `wait` early (status above 128) while the script goes on: wait again
    # until it has ended, then return its own status.
    while true; do
        wait "$pid" && return 0 || rc=$?
        ((rc > 128)) || return "$rc"
        kill -0 "$pid" 2>/dev/null && continue
        wait "$pid" 2>/dev/null && return 0 || rc2=$?
        ((rc2 == 127)) || rc=$rc2
        return "$rc"
    done
}

on_signal() {
    stop_signal=${stop_signal:-$1}
    if [[ -n $sleeper ]]; then kill "$sleeper" 2>/dev/null || true; fi
}

# Acts on a signal received since the last step.
check_stop() {
    [[ -z $stop_signal ]] && return 0
    say "$stop_signal: stopping the propagator, the consumer, then the database"
    exit 0
}

on_exit() {
    local rc=$?
    shutdown || rc=1
    ((rc == 0)) && say "everything stopped"
    exit "$rc"
}

# How make reaches /readyz: over HTTPS with curl when the consumer serves it, checked against
# PROPAGATOR_TLS_CA_FILE (the CA the propagator trusts) under the host name of
# PROPAGATOR_ENDPOINT, else plain HTTP. Refuses at once what cannot work, instead of timing out
# later.
ready_url=
curl_tls=()
prepare_readiness() {
    if ! consumer_tls; then
        ready_url=http://127.0.0.1:$CONSUMER_PORT/readyz
        [[ $PROPAGATOR_ENDPOINT != https://* ]] || die "PROPAGATOR_ENDPOINT is https:// but the" \
            "consumer serves plain HTTP (CONSUMER_TLS_CERT_FILE is empty): change one of them in .env"
        return 0
    fi
    local what="the consumer serves HTTPS (CONSUMER_TLS_CERT_FILE/CONSUMER_TLS_KEY_FILE are set)"
    [[ -n ${CONSUMER_TLS_CERT_FILE:-} && -n ${CONSUMER_TLS_KEY_FILE:-} ]] ||
        die "$what, but not both: set CONSUMER_TLS_CERT_FILE and CONSUMER_TLS_KEY_FILE, or neither"
    command -v curl >/dev/null || die "$what, and make checks its /readyz over HTTPS with curl," \
        "which is not installed (Debian/Ubuntu: apt-get install curl); or empty them in .env"
    local ca=${PROPAGATOR_TLS_CA_FILE:-}
    [[ -n $ca ]] || die "$what, but PROPAGATOR_TLS_CA_FILE is empty: make checks /readyz with" \
        "curl --cacert, and the propagator trusts the consumer, through that file; set it in .env" \
        "to the CA certificate (PEM) that signed CONSUMER_TLS_CERT_FILE"
    [[ -r $ca ]] || die "$what; PROPAGATOR_TLS_CA_FILE=$ca cannot be read"
    [[ $PROPAGATOR_ENDPOINT == https://* ]] || die "$what, but PROPAGATOR_ENDPOINT=$PROPAGATOR_ENDPOINT" \
        "is plain HTTP: make it https:// (or leave it unset: make then uses https://localhost:$CONSUMER_PORT/event)"
    curl_tls=(--cacert "$ca")
    if [[ -n ${CONSUMER_TLS_CLIENT_CA_FILE:-} ]]; then
        [[ -n ${PROPAGATOR_TLS_CLIENT_CERT_FILE:-} && -n ${PROPAGATOR_TLS_CLIENT_KEY_FILE:-} ]] ||
            die "the consumer requires client certificates (CONSUMER_TLS_CLIENT_CA_FILE is set), but" \
                "PROPAGATOR_TLS_CLIENT_CERT_FILE/PROPAGATOR_TLS_CLIENT_KEY_FILE are not both set:" \
                "make and the propagator present that certificate"
        curl_tls+=(--cert "$PROPAGATOR_TLS_CLIENT_CERT_FILE" --key "$PROPAGATOR_TLS_CLIENT_KEY_FILE")
    fi
    # Verified under the name the propagator verifies (its endpoint's host), on make's own
    # consumer: curl connects to 127.0.0.1:CONSUMER_PORT whatever that name resolves to.
    local authority=${PROPAGATOR_ENDPOINT#https://}
    authority=${authority%%/*}
    local host=$authority port=443
    if [[ $authority =~ ^(\[[^]]*\]|[^:]*)(:([0-9]+))?$ ]]; then
        host=${BASH_REMATCH[1]}
        port=${BASH_REMATCH[3]:-443}
    fi
    curl_tls+=(--connect-to "$host:$port:127.0.0.1:$CONSUMER_PORT")
    ready_url=https://$host:$port/readyz
}

# The status code /readyz answers, or nothing. Over HTTPS, a certificate that does not verify
# ends the run at once with curl's reason (a retry cannot change it).
ready_status() {
    if ((${#curl_tls[@]} == 0)); then
        http_status 127.0.0.1 "$CONSUMER_PORT" /readyz
        return 0
    fi
    local code rc=0
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 "${curl_tls[@]}" "$ready_url" \
        2>"$run_dir/curl.err") || rc=$?
    case $rc in
    0) printf '%s\n' "$code" ;;
    35 | 58 | 59 | 60 | 77 | 80 | 83 | 90 | 91)
        die "the consumer answers on ${ready_url%/readyz}, but the TLS check failed with" \
            "PROPAGATOR_TLS_CA_FILE=$PROPAGATOR_TLS_CA_FILE: $(sed 's/^curl: //' "$run_dir/curl.err")" \
            "(the certificate must be for localhost and signed by that CA)" ;;
    esac
}

# After /readyz answered 200: the socket listening on the port must be the consumer's own
# (from /proc/net/tcp{,6} and its fds), or the answer came from another program.
check_port_owner() {
    local pid=${pids[consumer]} others state=''
    if alive "$pid" && listens_on "$pid" "$CONSUMER_PORT"; then return 0; fi
    alive "$pid" || state=', which exited'
    others=$(foreign_listeners "$CONSUMER_PORT" "$pid")
    die "port $CONSUMER_PORT was taken by another program after the check (${others//$'\n'/; }):" \
        "it answers /readyz, not the consumer make started (pid $pid$state), so make stops here: stop" \
        "that program, or set CONSUMER_PORT in .env to a free port"
}

# The consumer ended before /readyz answered: say whether another program took its port.
consumer_gone() {
    local pid=${pids[consumer]} rc=0 others
    wait "$pid" || rc=$?
    unset "pids[consumer]"
    others=$(foreign_listeners "$CONSUMER_PORT")
    if [[ -n $others ]]; then
        die "port $CONSUMER_PORT was taken by another program after the check (${others//$'\n'/; }):" \
            "the consumer could not listen there and exited (status $rc). Stop that program, or set" \
            "CONSUMER_PORT in .env to a free port"
    fi
    die "the consumer exited before it was ready (exit status $rc; its log is above)"
}

wait_ready() {
    local deadline=$((SECONDS + 60)) code
    say "waiting for the consumer's /readyz on $ready_url"
    while :; do
        check_stop
        code=$(ready_status)
        if [[ $code == 200 ]]; then
            check_port_owner
            return 0
        fi
        alive "${pids[consumer]}" || consumer_gone
        if ((SECONDS >= deadline)); then
            die "the consumer's /readyz did not answer 200 within 60 s (last: ${code:-no answer})"
        fi
        sleep 0.3
    done
}

require_free_consumer_port() {
    if port_in_use "$CONSUMER_PORT"; then
        local others
        others=$(foreign_listeners "$CONSUMER_PORT")
        die "port $CONSUMER_PORT (CONSUMER_PORT) is already in use by another program${others:+ (${others//$'\n'/; })}:" \
            "stop it, or set CONSUMER_PORT in .env to a free port"
    fi
}

run() {
    ensure_dotenv
    load_settings
    require_local_db_host
    require_psql
    local pid bin
    if pid=$(suite_running); then
        die "the system is already running from $state (pid $pid): 'make stop' stops it"
    fi
    for bin in event_consumer event_propagator; do
        [[ -x $target_dir/release/$bin ]] || die "$target_dir/release/$bin is missing: run 'make' (it builds first)"
    done
    command -v setsid >/dev/null || die "setsid not found (util-linux): it keeps Ctrl-C away from the services"
    prepare_readiness
    local mode
    mode=$(choose_db_mode)
    require_free_consumer_port

    mkdir -p "$run_dir" "$log_dir"
    echo $$ >"$run_dir/suite.pid"
    trap 'on_signal SIGINT' INT
    trap 'on_signal SIGTERM' TERM
    trap 'on_signal SIGHUP' HUP
    trap on_exit EXIT

    echo "$mode" >"$run_dir/db-mode"
    started_db=$mode
    db_script "$mode" start || { check_stop; die "the database did not start (the reason is above)"; }
    check_stop
    say "applying the schema (db_init_script.sh)"
    ./db_init_script.sh || { check_stop; die "db_init_script.sh failed (its output is above)"; }
    check_stop

    # Again right before the consumer takes the port: the database's start can take a while.
    require_free_consumer_port
    if [[ -n ${EVENTS_TEST_AFTER_PORT_CHECK:-} ]]; then bash -c "$EVENTS_TEST_AFTER_PORT_CHECK"; fi
    say "starting the consumer ($target_dir/release/event_consumer --config config.yaml, port $CONSUMER_PORT)"
    start_service consumer "$target_dir/release/event_consumer" --config config.yaml
    wait_ready
    check_stop
    say "starting the propagator (sending to $PROPAGATOR_ENDPOINT)"
    start_service propagator "$target_dir/release/event_propagator" --config config.yaml

    say "running: consumer on ${ready_url%/readyz}, propagator sending to $PROPAGATOR_ENDPOINT," \
        "database ($mode) on $DB_HOST:$DB_PORT. Ctrl-C or 'make stop' stops everything;" \
        "'make status' counts the stored events, 'make psql' opens the database."

    local name rc now last_count='' next_report=$((SECONDS + report_every))
    while :; do
        check_stop
        if ((report_every > 0 && SECONDS >= next_report)); then
            next_report=$((SECONDS + report_every))
            if now=$(PGOPTIONS='-c statement_timeout=3000' db_psql -d "$DB_NAME" -qtA \
                -c 'SELECT count(*) FROM events' 2>/dev/null); then
                printf '%s%-10s |%s %s events stored%s\n' "$green" database "$reset" "$now" \
                    "${last_count:+ (+$((now - last_count)) in the last $report_every s)}"
                last_count=$now
            fi
        fi
        for name in consumer propagator; do
            if ! alive "${pids[$name]}"; then
                rc=0
                wait "${pids[$name]}" || rc=$?
                unset "pids[$name]"
                die "the $name exited on its own (exit status $rc): stopping the rest"
            fi
        done
        sleep 1 &
        sleeper=$!
        wait "$sleeper" || true
        sleeper=
    done
}

# --- stop -------------------------------------------------------------------------------------

# Stops what a run started, from its pid files: for a run that was killed, or one that does not
# finish stopping. Names what outlives SIGKILL. False when something is left.
stop_leftovers() {
    local name pid mode left=0 deadline found=
    deadline=$(($(now_ms) + grace * 1000))
    for name in propagator consumer; do
        if pid=$(live_pid "$run_dir/$name.pid") && grep -q "event_$name" "/proc/$pid/cmdline" 2>/dev/null; then
            found=1
            say "stopping a leftover $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            while alive "$pid" && (($(now_ms) < deadline)); do sleep 0.1; done
            if alive "$pid"; then
                say "the $name did not stop within $grace s (STOP_GRACE_SECONDS): killing it"
                kill -KILL "$pid" 2>/dev/null || true
                wait_gone "$pid" 3 || { cannot_stop "$pid" "the $name"; left=1; }
            fi
        fi
        # Its prefixer, a copy of this script: it ends with the service's output; TERM if not.
        if pid=$(live_pid "$run_dir/$name.prefixer.pid") && grep -q run-suite "/proc/$pid/cmdline" 2>/dev/null; then
            wait_gone "$pid" 2 || kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" 1 || kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$run_dir/$name.pid" "$run_dir/$name.prefixer.pid" "$run_dir/$name.fifo"
    done
    mode=$(cat "$run_dir/db-mode" 2>/dev/null || true)
    if [[ -n $mode ]]; then
        found=1
        "scripts/$mode-pg.sh" stop || left=1
        rm -f "$run_dir/db-mode"
    elif [[ -f $state/pg/data/postmaster.pid ]]; then
        found=1
        scripts/local-pg.sh stop || left=1
    fi
    [[ -n $found ]] || say "nothing is running from $state"
    return "$left"
}

stop() {
    load_settings
    local pid wait_s=$((grace + 20)) left=0
    if ! pid=$(suite_running); then
        stop_leftovers
        rm -f "$run_dir/suite.pid"
        return
    fi
    say "asking the running make (pid $pid) to stop"
    kill -TERM "$pid"
    if wait_gone "$pid" "$wait_s"; then
        say "stopped"
        return 0
    fi
    say "the running make (pid $pid) did not finish stopping within $wait_s s: stopping what it started"
    stop_leftovers || left=1
    kill -KILL "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 3; then
        cannot_stop "$pid" "the running make (scripts/run-suite.sh)"
        left=1
    fi
    rm -f "$run_dir/suite.pid"
    ((left == 0)) || die "not everything could be stopped (see above)"
    say "stopped (the running make was killed)"
}

# --- clean-db ---------------------------------------------------------------------------------

clean_db() {
    load_settings
    local pid
    if pid=$(suite_running); then
        die "the system is running (pid $pid): 'make stop' first"
    fi
    scripts/local-pg.sh clean
    if docker_engine; then scripts/docker-pg.sh clean; fi
    rm -f "$run_dir/db-mode"
}

case ${1:-} in
run) run ;;
prefix) prefix_lines "$2" "$3" ;; # start_service's prefixer
stop) stop ;;
clean-db) clean_db ;;
*)
    echo "usage: $me run|stop|clean-db" >&2
    exit 2
    ;;
esac
