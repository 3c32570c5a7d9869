#!/usr/bin/env bash
# make ha: several consumers behind HAProxy on a primary with a synchronous standby, faults
# included, and every acknowledged event stored exactly once on the database that survives.
#
# On one machine, loopback with distinct ports:
#   - a PostgreSQL primary with deploy/postgresql/primary.conf (synchronous_standby_names,
#     synchronous_commit = on) and a hot standby made from it with `pg_basebackup -R`
#     (pg_cluster standby) with deploy/postgresql/standby.conf;
#   - the schema applied by db_init_script.sh given both hosts (it finds the primary);
#   - 3 consumers, each configured with both database hosts (target_session_attrs read-write)
#     and `drain_seconds: 5`;
#   - HAProxy with deploy/haproxy/haproxy.cfg, its server lines and ports rewritten to the
#     consumers, when haproxy is installed (CI installs it); without it the script says so and
#     every propagator uses an endpoint list instead;
#   - 4 propagators with --keys-log for HA_SECONDS: two through HAProxy (single events), one
#     with the three consumers as an endpoint list (single events) and one with the list sending
#     batches of 10.
# Meanwhile, one after the other: SIGKILL a consumer and restart it; SIGTERM one and let it drain
# (its /readyz 503 at once, serving for 5 s, then exit 0; restarted); SIGSTOP one for 10 s;
# SIGKILL the primary's postmaster and promote the standby (pg_ctl promote).
# Afterwards every key of the keys logs must be in the new primary's table exactly once, no row
# may carry a key that is in no log, every propagator must have exited 0, and the drained
# consumer must have exited 0. Exit 1 otherwise.
#
# Settings (environment): HA_SECONDS (60; at least 30, CI runs 30), HA_RATE (events/s of each
# propagator, 40), HA_KEEP=1 keeps the work directory (always kept on failure). Binaries come
# from ${CARGO_TARGET_DIR:-target}/release (`make ha` builds them).
set -euo pipefail
me=ha.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=${HA_SECONDS:-60}
rate=${HA_RATE:-40}
for n in seconds rate; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "HA_$(tr '[:lower:]' '[:upper:]' <<<"$n") must be a positive whole number, got '${!n}'"
done
((seconds >= 30)) || die "HA_SECONDS must be at least 30 (the faults take about 25 s)"

bin=${CARGO_TARGET_DIR:-$repo/target}/release
for program in event_consumer event_propagator; do
    [[ -x $bin/$program ]] || die "$bin/$program is missing: run \`make ha\` (it builds), or cargo build --release"
done
need_pg_cluster
command -v psql >/dev/null || die "psql not found: install the PostgreSQL client"
haproxy_bin=$(command -v haproxy || true)

work=$(mktemp -d "${TMPDIR:-/tmp}/ha.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/logs" "$work/keys"
consumers=3
consumer_pid=() consumer_port=() propagator_pid=() stopped_pid=
haproxy_pid=

# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    local status=$?
    set +e
    [[ -n $stopped_pid ]] && kill -CONT "$stopped_pid" 2>/dev/null
    for pid in "${propagator_pid[@]}" "${consumer_pid[@]}" $haproxy_pid; do
        kill -KILL "$pid" 2>/dev/null
    done
    pg_cluster stop --dir "$work/primary" --mode immediate >/dev/null 2>&1
    pg_cluster stop --dir "$work/standby" --mode immediate >/dev/null 2>&1
    if ((status != 0)) || [[ ${HA_KEEP:-} == 1 ]]; then
        say "work directory kept: $work (logs/, keys/)"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started_at=$(date +%s.%N)
elapsed() { awk -v s="$started_at" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'; }
timeline=()
note() { timeline+=("$(printf '%6ss  %s' "$(elapsed)" "$*")"); say "${timeline[-1]}"; }

# --- PostgreSQL: a primary and a synchronous standby --------------------------------------
# include_conf DATA FILE: copy a file of deploy/postgresql into the data directory and include
# it from postgresql.conf, so the run uses the shipped settings as they are.
include_conf() {
    cp "$repo/deploy/postgresql/$2" "$1/$2"
    printf "\ninclude '%s'\n" "$2" >>"$1/postgresql.conf"
    pg_cluster own "$1/$2" >/dev/null 2>&1 || true
}
start_cluster "$work/primary"
primary_port=$cluster_port primary_data=$cluster_data primary_log=$cluster_log
include_conf "$primary_data" primary.conf
pg_cluster restart --dir "$work/primary" --mode fast >/dev/null || die "the primary did not restart with primary.conf (see $primary_log)"
out=$(pg_cluster standby --dir "$work/standby" --of "$primary_port") || die "cannot make the standby (the reason is above)"
standby_port=$(sed -n 's/^port=//p' <<<"$out")
standby_data=$(sed -n 's/^data=//p' <<<"$out")
include_conf "$standby_data" standby.conf
pg_cluster restart --dir "$work/standby" --mode fast >/dev/null || die "the standby did not restart with standby.conf"
psql_at() { PGCONNECT_TIMEOUT=3 psql -X -qAt -h 127.0.0.1 -p "$1" -U postgres "${@:2}"; }
deadline=$((SECONDS + 30))
until [[ $(psql_at "$primary_port" -d postgres -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'" 2>/dev/null) == sync ]]; do
    ((SECONDS < deadline)) || die "the standby did not become the primary's synchronous standby within 30 s"
    sleep 0.2
done
hosts="127.0.0.1,127.0.0.1" ports="$primary_port,$standby_port"
(cd "$work" && DB_HOST=$hosts DB_PORT=$ports DB_USER=postgres DB_PASSWORD="" DB_NAME=events \
    "$repo/db_init_script.sh" >"$work/logs/db_init.log" 2>&1) ||
    { cat "$work/logs/db_init.log" >&2; die "db_init_script.sh failed"; }
note "primary on $primary_port, synchronous standby on $standby_port (sync_state sync), schema applied"

# --- consumers ----------------------------------------------------------------------------
mapfile -t ports_free < <(pg_cluster free-port $((consumers + 1)))
((${#ports_free[@]} == consumers + 1)) || die "found no free ports"
consumer_port=("${ports_free[@]:0:consumers}")
haproxy_port=${ports_free[consumers]}
start_consumer() {
    local i=$1 deadline=$((SECONDS + 20))
    (cd "$work" && LOG_LEVEL=info exec "$bin/event_consumer" --config "$work/consumer-$i.yaml" \
        >>"$work/logs/consumer-$i.log" 2>&1) &
    consumer_pid[i]=$!
    until [[ $(http_status 127.0.0.1 "${consumer_port[i]}" /readyz) == 200 ]]; do
        ((SECONDS < deadline)) || die "consumer $i was not ready within 20 s (see $work/logs/consumer-$i.log)"
        alive "${consumer_pid[i]}" || die "consumer $i exited at start (see $work/logs/consumer-$i.log)"
        sleep 0.05
    done
}
for i in $(seq 0 $((consumers - 1))); do
    cat >"$work/consumer-$i.yaml" <<EOF
database:
  host: "$hosts"
  port: "$ports"
  target_session_attrs: read-write
  user: postgres
  password: ""
  dbname: events
consumer:
  host: 127.0.0.1
  port: ${consumer_port[i]}
  drain_seconds: 5
EOF
    start_consumer "$i"
done
note "consumers on ports ${consumer_port[*]}"

# --- HAProxy ------------------------------------------------------------------------------
if [[ -n $haproxy_bin ]]; then
    # The shipped file with the bind port and the three server lines of each backend pointed at
    # the consumers.
    awk -v port="$haproxy_port" -v c1="${consumer_port[0]}" -v c2="${consumer_port[1]}" -v c3="${consumer_port[2]}" '
        $1 == "bind" { sub(/:8080/, "127.0.0.1:" port) }
        $1 == "server" { split("0 " c1 " " c2 " " c3, p, " "); n = substr($2, length($2)) + 1; sub(/10\.0\.0\.1[0-9]:8080/, "127.0.0.1:" p[n]) }
        { print }' "$repo/deploy/haproxy/haproxy.cfg" >"$work/haproxy.cfg"
    grep -q "127.0.0.1:${consumer_port[2]}" "$work/haproxy.cfg" || die "could not point deploy/haproxy/haproxy.cfg's server lines at the consumers"
    "$haproxy_bin" -c -f "$work/haproxy.cfg" >"$work/logs/haproxy-check.log" 2>&1 ||
        { cat "$work/logs/haproxy-check.log" >&2; die "haproxy rejects the configuration"; }
    "$haproxy_bin" -db -f "$work/haproxy.cfg" >"$work/logs/haproxy.log" 2>&1 &
    haproxy_pid=$!
    deadline=$((SECONDS + 10))
    until [[ $(http_status 127.0.0.1 "$haproxy_port" /healthz) == 200 ]]; do
        ((SECONDS < deadline)) || die "HAProxy did not answer within 10 s (see $work/logs/haproxy.log)"
        sleep 0.1
    done
    note "HAProxy $("$haproxy_bin" -v | awk 'NR == 1 { print $3 }') on port $haproxy_port"
else
    say "haproxy is not installed (Debian: apt-get install haproxy): every propagator uses the consumers' endpoint list instead"
fi

# --- propagators --------------------------------------------------------------------------
printf 'propagator:\n  events_file: %s\n' "$repo/events.json" >"$work/propagator.yaml"
list=()
for port in "${consumer_port[@]}"; do list+=(--endpoint "http://127.0.0.1:$port/event"); done
via_haproxy=(--endpoint "http://127.0.0.1:$haproxy_port/event")
[[ -n $haproxy_bin ]] || via_haproxy=("${list[@]}")
period=$(awk -v r="$rate" 'BEGIN { printf "%.6f", 1 / r }')
kinds=("through HAProxy" "through HAProxy" "endpoint list" "endpoint list, batches of 10")
[[ -n $haproxy_bin ]] || kinds[0]="endpoint list (no HAProxy)" kinds[1]="endpoint list (no HAProxy)"
start_propagator() { # J ENDPOINT-ARGS... -- EXTRA-ARGS...
    local j=$1
    shift
    (cd "$work" && exec "$bin/event_propagator" --config "$work/propagator.yaml" "$@" \
        --duration "$seconds" --keys-log "$work/keys/propagator-$j.keys" --seed $((j + 1)) \
        >"$work/logs/propagator-$j.log" 2>&1) &
    propagator_pid[j]=$!
}
start_propagator 0 "${via_haproxy[@]}" --period "$period"
start_propagator 1 "${via_haproxy[@]}" --period "$period"
start_propagator 2 "${list[@]}" --period "$period"
start_propagator 3 "${list[@]}" --period "$(awk -v p="$period" 'BEGIN { printf "%.6f", p * 10 }')" --batch-size 10
described=
for j in "${!kinds[@]}"; do described+="${described:+; }$j ${kinds[j]}"; done
note "4 propagators at $rate events/s each for $seconds s: $described"

# --- faults, one after the other ----------------------------------------------------------
gap=$(((seconds - 25) / 5))
((gap >= 1)) || gap=1
sleep "$gap"

kill -KILL "${consumer_pid[0]}"
wait "${consumer_pid[0]}" 2>/dev/null || true
note "SIGKILL consumer 0"
sleep 0.5
start_consumer 0
note "consumer 0 restarted and ready"
sleep "$gap"

kill -TERM "${consumer_pid[1]}"
drain_from=$SECONDS readyz=$(http_status 127.0.0.1 "${consumer_port[1]}" /readyz)
[[ $readyz == 503 ]] || die "consumer 1's /readyz answered '$readyz' right after SIGTERM, not 503 (drain)"
drained=0
wait "${consumer_pid[1]}" || drained=$?
note "SIGTERM consumer 1: /readyz 503 at once, exited $drained after $((SECONDS - drain_from)) s of drain"
start_consumer 1
note "consumer 1 restarted and ready"
sleep "$gap"

kill -STOP "${consumer_pid[2]}"
stopped_pid=${consumer_pid[2]}
note "SIGSTOP consumer 2"
sleep 10
kill -CONT "${consumer_pid[2]}"
stopped_pid=
note "SIGCONT consumer 2 after 10 s"
sleep "$gap"

kill -KILL "$(head -n 1 "$primary_data/postmaster.pid")"
note "SIGKILL the primary's postmaster"
pg_cluster promote --dir "$work/standby" >/dev/null || die "pg_ctl promote failed"
note "standby promoted (pg_ctl promote)"

# --- wait for the propagators -------------------------------------------------------------
wait_for_propagators "$seconds"
for i in "${!consumer_pid[@]}"; do
    kill -TERM "${consumer_pid[i]}" 2>/dev/null || true
done
for i in "${!consumer_pid[@]}"; do wait "${consumer_pid[i]}" 2>/dev/null || true; done
consumer_pid=() propagator_pid=()

# --- the check, on the new primary --------------------------------------------------------
cd "$work"
sql() { psql_at "$standby_port" -d events "$@"; }
[[ $(sql -c 'SELECT pg_is_in_recovery()') == f ]] || die "the promoted standby is still in recovery"
keys_vs_table

front="HAProxy in front"
[[ -n $haproxy_bin ]] || front="no HAProxy (endpoint lists only)"
printf '\nha: %s s, %s consumers (drain_seconds 5), primary + synchronous standby, %s\n' \
    "$seconds" "$consumers" "$front"
printf 'faults and steps:\n'
printf '  %s\n' "${timeline[@]}"
for j in 0 1 2 3; do
    printf 'propagator %s (%s): %s\n' "$j" "${kinds[j]}" \
        "$(grep 'summary:' "logs/propagator-$j.log" | tail -n 1 |
            grep -o 'sent=[0-9]* delivered=[0-9]*\|retries=[0-9]*\|delivered_by_endpoint=[^ ]*' | paste -sd ' ')"
done
printf 'events generated:   %s\n' "$n_generated"
printf 'stored:             %s (rows %s, on the promoted standby)\n' "$stored" "$n_rows"
printf 'lost:               %s\n' "$lost_n"
printf 'duplicated:         %s (keys stored more than once %s, rows with a key in no log %s)\n' \
    "$duplicated" "$repeated_n" "$strangers_n"
printf 'longest stall:      %s s without a new row\n' "$stall"
printf 'propagators:        %s of 4 exited 0\n' "$((4 - failed_propagators))"
printf 'drained consumer:   exited %s\n' "$drained"

status=0
((log_dups == 0)) || { say "the keys logs repeat $log_dups keys (a propagator bug)"; status=1; }
((lost_n == 0)) || { say "lost keys (first 5):"; head -n 5 lost >&2; status=1; }
((duplicated == 0)) || { say "duplicated (first 5):"; head -n 5 repeated strangers >&2; status=1; }
((failed_propagators == 0)) || status=1
((drained == 0)) || { say "the drained consumer exited $drained, not 0"; status=1; }
if ((status == 0)); then echo "ha: PASS"; else echo "ha: FAIL"; fi
exit "$status"
