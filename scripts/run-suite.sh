#!/usr/bin/env bash
# The whole system on this machine, for `make`: run | stop | clean-db.
#
# run: starts PostgreSQL (a container when a Docker engine answers, else a local cluster kept in
#      .local/pg), applies the schema with db_init_script.sh, starts the consumer, waits until its
#      /readyz answers, starts the propagator, and streams both services' logs with a prefix
#      (also appended to .local/logs/<service>.log). Ctrl-C, SIGTERM or `make stop` stop the
#      propagator, then the consumer, then the database. Run `make` (it builds first).
# stop: asks a running `run` to stop and waits for it; stops leftovers when `run` is gone.
# clean-db: deletes the local cluster and the container's volume.
#
# The services run in sessions of their own (setsid), so the terminal's Ctrl-C reaches only this
# script, which then stops them one after the other in that order.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

# Seconds each service gets to stop after SIGTERM before SIGKILL: their shutdown_timeout_seconds
# (10 in config.yaml) plus a margin.
readonly grace=${STOP_GRACE_SECONDS:-15}
readonly target_dir=${CARGO_TARGET_DIR:-target}
# Every so often the run prints how many events the table holds, to show them flowing
# (EVENTS_REPORT_SECONDS=0: never).
readonly report_every=${EVENTS_REPORT_SECONDS:-10}
if [[ -t 1 ]]; then green=$'\e[32m' reset=$'\e[0m'; else green='' reset=''; fi

suite_running() { live_pid "$run_dir/suite.pid"; }

# --- run ----------------------------------------------------------------------------------------

declare -A pids=() prefixers=()
started_db=
sleeper=
shutting_down=

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

# start_service NAME ARGS...: the service in its own session, its output through a FIFO to
# prefix_lines. The prefixer ignores INT and TERM so it outlives Ctrl-C and prints the service's
# last lines; it ends when the service closes its output.
start_service() {
    local name=$1 fifo=$run_dir/$1.fifo
    shift
    rm -f "$fifo"
    mkfifo "$fifo"
    (
        trap '' INT TERM HUP
        prefix_lines "$(printf '%-10s' "$name")" "$log_dir/$name.log" <"$fifo"
    ) &
    prefixers[$name]=$!
    setsid "$@" >"$fifo" 2>&1 </dev/null &
    pids[$name]=$!
    echo "${pids[$name]}" >"$run_dir/$name.pid"
}

# Sends SIGTERM, waits up to $grace seconds, then SIGKILL. Returns the service's exit status.
stop_service() {
    local name=$1 pid=${pids[$1]:-} rc=0 i
    [[ -n $pid ]] || return 0
    if alive "$pid"; then
        say "stopping the $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "the $name did not stop within $grace s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    unset "pids[$name]"
    rm -f "$run_dir/$name.pid"
    # The prefixer ends when the service's output closes; let it print the last lines first.
    local ppid=${prefixers[$name]:-}
    if [[ -n $ppid ]]; then
        for ((i = 0; i < 50; i++)); do
            alive "$ppid" || break
            sleep 0.1
        done
        kill "$ppid" 2>/dev/null || true
        wait "$ppid" 2>/dev/null || true
        unset "prefixers[$name]"
    fi
    rm -f "$run_dir/$name.fifo"
    say "the $name stopped (exit status $rc)"
    return "$rc"
}

# Propagator, consumer, database: each only if it was started. Never interrupted by a signal.
shutdown() {
    local failed=0
    [[ -n $shutting_down ]] && return 0
    shutting_down=1
    trap '' INT TERM HUP
    if [[ -n $sleeper ]]; then kill "$sleeper" 2>/dev/null || true; fi
    stop_service propagator || true
    stop_service consumer || failed=1
    if [[ -n $started_db ]]; then
        "scripts/$started_db-pg.sh" stop || failed=1
    fi
    rm -f "$run_dir/db-mode" "$run_dir/suite.pid"
    return "$failed"
}

on_signal() {
    say "$1: stopping the propagator, the consumer, then the database"
    exit 0
}

on_exit() {
    local rc=$?
    shutdown || rc=1
    ((rc == 0)) && say "everything stopped"
    exit "$rc"
}

wait_ready() {
    local deadline=$((SECONDS + 60)) host=127.0.0.1 code
    say "waiting for the consumer's /readyz on $host:$CONSUMER_PORT"
    while :; do
        alive "${pids[consumer]}" || die "the consumer exited before it was ready (its log is above)"
        code=$(http_status "$host" "$CONSUMER_PORT" /readyz)
        [[ $code == 200 ]] && return 0
        if ((SECONDS >= deadline)); then
            die "the consumer's /readyz did not answer 200 within 60 s (last: ${code:-no answer})"
        fi
        sleep 0.3
    done
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
    local mode
    mode=$(choose_db_mode)
    if port_in_use "$CONSUMER_PORT"; then
        die "port $CONSUMER_PORT (CONSUMER_PORT) is already in use by another program: stop it, or" \
            "set CONSUMER_PORT in .env to a free port"
    fi

    mkdir -p "$run_dir" "$log_dir"
    echo $$ >"$run_dir/suite.pid"
    trap 'on_signal SIGINT' INT
    trap 'on_signal SIGTERM' TERM
    trap 'on_signal SIGHUP' HUP
    trap on_exit EXIT

    echo "$mode" >"$run_dir/db-mode"
    started_db=$mode
    "scripts/$mode-pg.sh" start
    ./db_init_script.sh

    start_service consumer "$target_dir/release/event_consumer" --config config.yaml
    wait_ready
    start_service propagator "$target_dir/release/event_propagator" --config config.yaml

    say "running: consumer on http://127.0.0.1:$CONSUMER_PORT, propagator sending to $PROPAGATOR_ENDPOINT," \
        "database ($mode) on $DB_HOST:$DB_PORT. Ctrl-C or 'make stop' stops everything;" \
        "'make status' counts the stored events."

    local name rc now last_count='' next_report=$((SECONDS + report_every))
    while :; do
        if ((report_every > 0 && SECONDS >= next_report)); then
            next_report=$((SECONDS + report_every))
            if now=$(db_psql -d "$DB_NAME" -qtA -c 'SELECT count(*) FROM events' 2>/dev/null); then
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

stop() {
    load_settings
    local pid name mode i
    if pid=$(suite_running); then
        say "asking the running system (pid $pid) to stop"
        kill -TERM "$pid"
        for ((i = 0; i < (3 * grace + 90) * 10; i++)); do
            alive "$pid" || { say "stopped"; return 0; }
            sleep 0.1
        done
        die "pid $pid is still running after $((3 * grace + 90)) s"
    fi
    # No run in charge: stop what a killed run may have left behind.
    local found=
    for name in propagator consumer; do
        if pid=$(live_pid "$run_dir/$name.pid") && grep -q "event_$name" "/proc/$pid/cmdline" 2>/dev/null; then
            found=1
            say "stopping a leftover $name (pid $pid)"
            kill -TERM "$pid"
            for ((i = 0; i < grace * 10; i++)); do alive "$pid" || break; sleep 0.1; done
            if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$run_dir/$name.pid" "$run_dir/$name.fifo"
    done
    mode=$(cat "$run_dir/db-mode" 2>/dev/null || true)
    if [[ -n $mode ]]; then
        found=1
        "scripts/$mode-pg.sh" stop
        rm -f "$run_dir/db-mode"
    elif [[ -f $state/pg/data/postmaster.pid ]]; then
        found=1
        scripts/local-pg.sh stop
    fi
    rm -f "$run_dir/suite.pid"
    [[ -n $found ]] || say "nothing is running from $state"
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
stop) stop ;;
clean-db) clean_db ;;
*)
    echo "usage: $me run|stop|clean-db" >&2
    exit 2
    ;;
esac
