#!/usr/bin/env bash
# `make smoke`: runs the real `make` flow on the local-cluster path, end to end, twice.
#
# Round 1: `make` in a process group of its own, as in a terminal; once events reach the table,
#          SIGINT to that group (what Ctrl-C does); then nothing of the suite may be left.
# Round 2: `make` again on the same data (it must start, and the rows of round 1 must still be
#          there), `make status`, then `make stop` from "another terminal"; nothing may be left.
# Finally `make clean-db` must remove the cluster.
#
# It never touches a developer's running suite: its own state directory under /tmp (cluster,
# pid files, logs), free ports for PostgreSQL and the consumer, and its own password (the
# environment wins over .env). When there was no .env, `make` creates one as it would for anyone;
# the smoke test removes it afterwards.
# SMOKE_KEEP=1 keeps the temporary directory for a look afterwards.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

passed=0
ok() { passed=$((passed + 1)); echo "ok $passed - $*"; }
fail() {
    echo "not ok - $*" >&2
    if [[ -n ${make_log:-} && -f $make_log ]]; then
        echo "--- the last lines of $make_log:"
        tail -n 40 "$make_log"
    fi >&2
    echo "smoke: $passed passed, 1 failed" >&2
    exit 1
}

# The make process group ignores nothing: a background job of a non-interactive shell starts with
# SIGINT ignored, and a signal ignored at startup could not be trapped by make or run-suite.sh.
if env --default-signal=INT true 2>/dev/null; then
    # shellcheck disable=SC2054 # the commas belong to env's option
    default_signals=(env --default-signal=INT,TERM,HUP)
elif command -v perl >/dev/null; then
    # shellcheck disable=SC2016 # perl code, not shell
    default_signals=(perl -e '$SIG{$_} = "DEFAULT" for qw(INT TERM HUP); exec @ARGV or die "exec: $!"')
else
    die "needs GNU env with --default-signal (coreutils 8.31 or later) or perl"
fi
command -v setsid >/dev/null || die "setsid (util-linux) not found"
require_psql
need_pg_cluster

tmp=$(mktemp -d "${TMPDIR:-/tmp}/events-smoke.XXXXXX")
# As root, PostgreSQL runs as `postgres`, which must be able to enter the directory.
chmod 755 "$tmp"
sm_state=$tmp/state
{ read -r db_port && read -r consumer_port; } < <(pg_cluster free-port 2) || die "found no free ports"
password=smoke-$RANDOM$RANDOM
suite_env=(
    EVENTS_STATE_DIR="$sm_state" EVENTS_DB=local
    DB_HOST=localhost DB_PORT="$db_port" DB_PASSWORD="$password"
    CONSUMER_PORT="$consumer_port" PROPAGATOR_ENDPOINT="http://127.0.0.1:$consumer_port/event"
    PROPAGATOR_PERIOD_SECONDS=0.2
)
make_pid=
make_log=
# `make` creates .env when it is missing; the smoke test removes the one it caused.
had_dotenv=
[[ -f .env ]] && had_dotenv=1

cleanup() {
    local rc=$?
    trap '' INT TERM
    if alive "$make_pid"; then
        kill -TERM -- "-$make_pid" 2>/dev/null || true
        for _ in {1..600}; do alive "$make_pid" || break; sleep 0.1; done
    fi
    env "${suite_env[@]}" scripts/run-suite.sh stop >/dev/null 2>&1 || true
    env "${suite_env[@]}" scripts/local-pg.sh stop >/dev/null 2>&1 || true
    [[ -n $had_dotenv ]] || rm -f .env
    if [[ ${SMOKE_KEEP:-} == 1 ]]; then
        echo "smoke: kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

count_events() {
    PGHOST=localhost PGPORT=$db_port PGUSER=${DB_USER:-postgres} PGPASSWORD=$password \
        PGDATABASE=${DB_NAME:-events} PGCONNECT_TIMEOUT=3 psql -X -qtA -c 'SELECT count(*) FROM events' 2>/dev/null
}

# Starts `make` as the leader of a new session and process group, like a shell starts a job.
start_make() {
    make_log=$tmp/make-$1.log
    "${default_signals[@]}" env "${suite_env[@]}" setsid make --no-print-directory run \
        >"$make_log" 2>&1 </dev/null &
    make_pid=$!
}

# Waits until the events table holds more than $1 rows; sets `events` to the count.
wait_for_events() {
    local deadline=$((SECONDS + 120)) n
    while :; do
        alive "$make_pid" || fail "make exited before events reached the table"
        n=$(count_events || true)
        if [[ $n =~ ^[0-9]+$ ]] && ((n > $1)); then
            events=$n
            return 0
        fi
        ((SECONDS < deadline)) || fail "no new events in the table within 120 s (count: ${n:-no answer})"
        sleep 0.5
    done
}

wait_make_exit() {
    local rc=0
    for _ in {1..900}; do alive "$make_pid" || break; sleep 0.1; done
    if alive "$make_pid"; then fail "make still runs 90 s after it was told to stop"; fi
    wait "$make_pid" || rc=$?
    make_pid=
    return "$rc"
}

# The pids of the suite as it runs: run-suite.sh, the services, the postmaster.
suite_pids() {
    local f
    for f in "$sm_state"/run/suite.pid "$sm_state"/run/consumer.pid "$sm_state"/run/propagator.pid; do
        [[ -f $f ]] && cat "$f"
    done
    head -n 1 "$sm_state/pg/data/postmaster.pid" 2>/dev/null || true
}

check_nothing_left() {
    local pid left=() p
    for pid in "$@"; do
        if alive "$pid"; then left+=("$pid: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"); fi
    done
    # Any process that carries this run's state directory in its environment or arguments.
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $pid == "$$" ]] && continue
        if grep -qzxF "EVENTS_STATE_DIR=$sm_state" "$p/environ" 2>/dev/null ||
            tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$sm_state/"; then
            left+=("$pid: $(tr '\0' ' ' 2>/dev/null <"$p/cmdline")")
        fi
    done
    ((${#left[@]} == 0)) || fail "$1 left processes behind: ${left[*]}"
    [[ ! -e $sm_state/pg/data/postmaster.pid ]] || fail "$1 left $sm_state/pg/data/postmaster.pid behind"
}

echo "smoke: building (make build)"
make --no-print-directory build >"$tmp/build.log" 2>&1 || { make_log=$tmp/build.log; fail "make build failed"; }
echo "smoke: state in $sm_state, PostgreSQL on port $db_port, consumer on port $consumer_port"

# --- round 1: make, events, Ctrl-C ---------------------------------------------------------------
start_make 1
wait_for_events 0
ok "make started PostgreSQL, the schema, the consumer and the propagator; events reach the table"
# A few seconds of flow (5 events a second) before the interrupt.
wait_for_events 10
count1=$events
mapfile -t pids1 < <(suite_pids)
((${#pids1[@]} == 4)) || fail "expected 4 pids (run-suite, consumer, propagator, postmaster), got: ${pids1[*]}"
if ! grep -q '^consumer   | ' "$make_log" || ! grep -q '^propagator | ' "$make_log"; then
    fail "the log does not carry both services' prefixed lines"
fi
ok "both services' logs are streamed with a prefix"

kill -INT -- "-$make_pid"
rc=0
wait_make_exit || rc=$?
grep -q 'everything stopped' "$make_log" || fail "after SIGINT make did not report 'everything stopped' (exit status $rc)"
[[ $(grep -n 'stopping the propagator (pid' "$make_log" | cut -d: -f1) -lt \
    $(grep -n 'stopping the consumer (pid' "$make_log" | cut -d: -f1) ]] ||
    fail "the consumer was stopped before the propagator"
ok "SIGINT to the make process group stopped propagator, consumer, database in that order (make exit status $rc)"
check_nothing_left "SIGINT" "${pids1[@]}"
ok "no process of the suite is left after SIGINT"

# --- round 2: make again on the same data, status, make stop -----------------------------------
start_make 2
wait_for_events $((count1 + 5))
count2=$events
ok "make ran again on the kept data: $count1 rows of round 1 kept, now $count2"
env "${suite_env[@]}" make --no-print-directory status >"$tmp/status.log" 2>&1 ||
    { make_log=$tmp/status.log; fail "make status failed"; }
grep -q "^events stored in .*: [0-9]" "$tmp/status.log" || { make_log=$tmp/status.log; fail "make status printed no count"; }
ok "make status: $(grep '^events stored' "$tmp/status.log")"
mapfile -t pids2 < <(suite_pids)
env "${suite_env[@]}" make --no-print-directory stop >"$tmp/stop.log" 2>&1 || { make_log=$tmp/stop.log; fail "make stop failed"; }
rc=0
wait_make_exit || rc=$?
((rc == 0)) || fail "make exited with status $rc after make stop"
check_nothing_left "make stop" "${pids2[@]}"
ok "make stop from another terminal stopped everything; make exited 0; no process left"

env "${suite_env[@]}" make --no-print-directory clean-db >"$tmp/clean.log" 2>&1 || { make_log=$tmp/clean.log; fail "make clean-db failed"; }
[[ ! -e $sm_state/pg ]] || fail "make clean-db left $sm_state/pg"
ok "make clean-db removed the local cluster"

echo "smoke: $passed passed, 0 failed"
