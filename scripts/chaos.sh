#!/usr/bin/env bash
# Chaos run: exactly-once delivery while consumers and the database fail.
#
# A throwaway PostgreSQL with default durability (fsync and synchronous_commit on), two
# consumers on one database, and propagators sending to both at a combined CHAOS_RATE events/s
# for CHAOS_SECONDS. Meanwhile, at random moments, one fault at a time:
#   - SIGKILL a consumer and start it again (3 times; once in the short form),
#   - pg_ctl restart -m fast (twice; once in the short form),
#   - pg_ctl restart -m immediate: crash recovery (once),
#   - SIGSTOP a consumer for 5 s, then SIGCONT (once),
#   - the database read-only for 5 s (default_transaction_read_only, the consumers' sessions
#     terminated), as after a failover to a standby (once),
#   - the database frozen for 5 s: every PostgreSQL process SIGSTOPped, as hung storage or a
#     paused VM look (once),
#   - the database's port silent for 8 s (long form only): iptables drops its segments on
#     loopback, no reset, as a broken link; the answers are cut 0.2 s before the requests, so
#     events committed in that moment lose their answer and come back as retries (once; needs
#     root and iptables, else left out with a line saying so, or a failure under
#     EVENTS_TEST_PRIVILEGED=require).
# In the short form (below 40 s) the read-only and frozen database last 3 s.
# Afterwards every key in the propagators' keys logs (written before each event's first send)
# must be in the table exactly once, no row may carry a key that is in no log, and every
# propagator must have exited 0. Exit 1 otherwise.
#
# Settings (environment): CHAOS_SECONDS (60; below 40 the short fault list), CHAOS_RATE (500),
# CHAOS_PROPAGATORS_PER_CONSUMER (4: a propagator has one event in flight at a time, and with
# fsync on a commit can take 25 ms, so two propagators at 250/s each fall ~12 % short), CHAOS_SEED (random), CHAOS_KEEP=1 keeps the work
# directory (always kept on failure), CHAOS_TLS: unset or 0 plain HTTP; 1 the consumers serve
# HTTPS (consumer.tls_cert_file, tls_key_file) with a certificate for 127.0.0.1 from a throwaway
# CA that openssl makes in the work directory (lib.sh's make_test_pki), the propagators send to
# https://127.0.0.1:PORT/event trusting that CA (propagator.tls_ca_file) and the health checks
# use curl --cacert; mtls as 1, and the consumers also require a client certificate from that
# CA (consumer.tls_client_ca_file), which the propagators and the health checks present
# (propagator.tls_client_cert_file, tls_client_key_file). CHAOS_BATCH (1): events a propagator
# sends in one request; above 1 it posts batches to POST /events (--batch-size), each slot
# CHAOS_BATCH events, the period stretched so the combined rate stays CHAOS_RATE events/s; a
# batch is stored all or nothing, so a fault mid-batch must leave every key once or not at all
# until its retry. Binaries come from
# ${CARGO_TARGET_DIR:-target}/release (`make chaos` builds them).
#
# CHAOS_SPOOL=1 (`make chaos-spool`): the propagators keep durable spools (--spool-dir), and the
# faults are the ones a spool must ride out (and the silent port above, moved out of the outage
# so that it meets live consumers): both consumers SIGKILLed and kept down for
# CHAOS_OUTAGE seconds (70, at least 20; longer than the ~45 s the default retry budget rides
# out), ending at least 20 s before the run does; beside it three propagators SIGKILLed at
# random moments and restarted (they replay their spools), at least one of them during the
# outage, and PostgreSQL restarted -m fast and -m immediate; max_retries 3, so that senders hand
# what they cannot deliver to the spool's retry thread and go on generating through the outage.
# CHAOS_SECONDS must be at least CHAOS_OUTAGE + 40. A
# propagator may then exit 3 (events kept in its spool), and the check becomes: every key in the
# keys logs is stored exactly once or is still in its propagator's spool (bench's spool_keys
# reads them), with no row whose key is in no log.
set -euo pipefail
me=chaos.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=${CHAOS_SECONDS:-60}
rate=${CHAOS_RATE:-500}
per_consumer=${CHAOS_PROPAGATORS_PER_CONSUMER:-4}
batch=${CHAOS_BATCH:-1}
seed=${CHAOS_SEED:-$((RANDOM * 32768 + RANDOM))}
spool=${CHAOS_SPOOL:-0}
outage=${CHAOS_OUTAGE:-70}
for n in seconds rate per_consumer seed outage; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive whole number, got '${!n}'"
done
((seconds >= 10)) || die "CHAOS_SECONDS must be at least 10"
case $spool in
0) ;;
1)
    ((outage >= 20)) || die "CHAOS_OUTAGE must be at least 20 (seconds), got $outage"
    ((seconds >= outage + 40)) || die "CHAOS_SPOOL=1 needs CHAOS_SECONDS of at least CHAOS_OUTAGE + 40 ($((outage + 40)))"
    ;;
*) die "CHAOS_SPOOL must be 0 or 1, got '$spool'" ;;
esac
if ! [[ $batch =~ ^[1-9][0-9]*$ ]] || ((batch > 1000)); then
    die "CHAOS_BATCH must be a whole number from 1 to 1000, got '$batch'"
fi
case ${CHAOS_TLS:-0} in
0) tls=none transport="plain HTTP" ;;
1) tls=server transport="HTTPS (a throwaway CA's certificate for 127.0.0.1)" ;;
mtls) tls=mutual transport="HTTPS with client certificates (mutual TLS, one throwaway CA)" ;;
*) die "CHAOS_TLS must be 0, 1 or mtls, got '$CHAOS_TLS'" ;;
esac
RANDOM=$seed

bin=${CARGO_TARGET_DIR:-$repo/target}/release
for program in event_consumer event_propagator; do
    [[ -x $bin/$program ]] || die "$bin/$program is missing: run \`make chaos\` (it builds), or cargo build --release"
done
if ((spool)) && [[ ! -x $bin/spool_keys ]]; then
    cargo build --release --quiet -p bench --bin spool_keys || die "cannot build bench's spool_keys"
fi
need_pg_cluster
command -v psql >/dev/null || die "psql not found: install the PostgreSQL client"

work=$(mktemp -d "${TMPDIR:-/tmp}/chaos.XXXXXX")
chmod 755 "$work"
consumers=2
propagators=$((consumers * per_consumer))
# Each propagator sends one request (of `batch` events) at a time on its own schedule; together
# they make `rate` events/s.
period=$(awk -v p="$propagators" -v r="$rate" -v b="$batch" 'BEGIN { printf "%.6f", p * b / r }')

sql() { PGCONNECT_TIMEOUT=3 psql -X -qAt -h 127.0.0.1 -p "$db_port" -U postgres -d events "$@"; }
# From the postgres database: a session of `events` started while it is read-only cannot undo it.
sql_admin() { PGCONNECT_TIMEOUT=3 psql -X -qAt -h 127.0.0.1 -p "$db_port" -U postgres -d postgres "$@"; }
# The postmaster and its children (what SIGSTOP must reach to freeze the server).
pg_processes() {
    local postmaster
    postmaster=$(head -n 1 "$cluster_data/postmaster.pid")
    echo "$postmaster"
    pgrep -P "$postmaster" || true
}

consumer_pid=() consumer_port=() propagator_pid=() frozen_pids=() partitioned=()

# The silent port: one iptables rule per direction (--sport: the server's answers, --dport: the
# requests), marked so that a leftover can be told from anything else.
partition_rule() {
    iptables -w "$1" INPUT -i lo -p tcp "$2" "$db_port" -m comment --comment events-chaos-partition -j DROP
}
can_partition() { [[ $(id -u) == 0 ]] && command -v iptables >/dev/null && iptables -w -S INPUT >/dev/null 2>&1; }
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    local status=$?
    set +e
    for pid in "${propagator_pid[@]}" "${consumer_pid[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${frozen_pids[@]}"; do kill -CONT "$pid" 2>/dev/null; done
    for direction in "${partitioned[@]}"; do partition_rule -D "$direction" 2>/dev/null; done
    pg_cluster stop --dir "$work/pg" --mode immediate >/dev/null 2>&1
    if ((status != 0)) || [[ ${CHAOS_KEEP:-} == 1 ]]; then
        say "work directory kept: $work (logs/, keys/)"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- PostgreSQL, default durability -------------------------------------------------------
mkdir -p "$work/logs" "$work/keys" "$work/spool"
# The harness's cluster (lib.sh's start_cluster): fsync stays on, as it does by default.
start_cluster "$work/pg"
db_port=$cluster_port
pg_log=$cluster_log
pg_restart() { pg_cluster restart --dir "$work/pg" --mode "$1" >/dev/null; }
PGCONNECT_TIMEOUT=3 psql -X -q -h 127.0.0.1 -p "$db_port" -U postgres -d postgres -c 'CREATE DATABASE events'
sql -f "$repo/schema.sql"
say "PostgreSQL $(sql -c 'SHOW server_version') on port $db_port: fsync=$(sql -c 'SHOW fsync'), synchronous_commit=$(sql -c 'SHOW synchronous_commit')"

# --- TLS ----------------------------------------------------------------------------------
pki=$work/pki
scheme=http
consumer_tls="" propagator_tls=""
if [[ $tls != none ]]; then
    command -v curl >/dev/null || die "curl not found: CHAOS_TLS checks the consumers' health over HTTPS with it"
    make_test_pki "$pki"
    scheme=https
    consumer_tls="  tls_cert_file: $pki/server.pem
  tls_key_file: $pki/server.key"
    propagator_tls="  tls_ca_file: $pki/ca.pem"
    if [[ $tls == mutual ]]; then
        consumer_tls+="
  tls_client_ca_file: $pki/ca.pem"
        propagator_tls+="
  tls_client_cert_file: $pki/client.pem
  tls_client_key_file: $pki/client.key"
    fi
fi
# The status of GET /healthz of the consumer on PORT, over the transport of the run.
health() {
    case $tls in
    none) http_status 127.0.0.1 "$1" /healthz ;;
    server) https_status 127.0.0.1 "$1" /healthz "$pki/ca.pem" ;;
    mutual) https_status 127.0.0.1 "$1" /healthz "$pki/ca.pem" "$pki/client.pem" "$pki/client.key" ;;
    esac
}

# --- consumers ----------------------------------------------------------------------------
start_consumer() {
    local i=$1
    (cd "$work" && LOG_LEVEL=info exec "$bin/event_consumer" --config "$work/consumer-$i.yaml" \
        >>"$work/logs/consumer-$i.log" 2>&1) &
    consumer_pid[i]=$!
    local deadline=$((SECONDS + 20))
    until [[ $(health "${consumer_port[i]}") == 200 ]]; do
        ((SECONDS < deadline)) || die "consumer $i did not answer /healthz within 20 s"
        alive "${consumer_pid[i]}" || die "consumer $i exited at start (see $work/logs/consumer-$i.log)"
        sleep 0.05
    done
}
mapfile -t consumer_port < <(pg_cluster free-port "$consumers")
((${#consumer_port[@]} == consumers)) || die "found no free ports for the consumers"
for i in $(seq 0 $((consumers - 1))); do
    cat >"$work/consumer-$i.yaml" <<EOF
database:
  host: 127.0.0.1
  port: $db_port
  user: postgres
  password: ""
  dbname: events
consumer:
  host: 127.0.0.1
  port: ${consumer_port[i]}
$consumer_tls
EOF
    start_consumer "$i"
done
say "consumers on ports ${consumer_port[*]}, $transport"

# --- propagators --------------------------------------------------------------------------
# Only the events file is set: the retry policy is the shipped default (max_retries 20,
# backoff 0.1 s doubling to 5 s with full jitter), which is what must ride out the faults.
# With CHAOS_TLS, also the CA file (and the client certificate).
# With CHAOS_SPOOL, max_retries 3: a sender hands an event it cannot deliver to its spool's
# retry thread after about a second instead of holding it for the ~45 s of the default budget,
# so the propagators go on generating (and spooling) through the outage.
spool_retries=""
((spool)) && spool_retries="  max_retries: 3"
printf 'propagator:\n  events_file: %s\n%s\n%s\n' "$repo/events.json" "$propagator_tls" "$spool_retries" >"$work/propagator.yaml"
started_at=$(date +%s.%N)
spool_args=()
# Propagator J for DURATION seconds (a restarted one for what is left of the run), appending to
# its log and keys log; with CHAOS_SPOOL, on its own spool.
start_propagator() { # J DURATION
    local j=$1 port=${consumer_port[$1 % consumers]}
    ((spool)) && spool_args=(--spool-dir "$work/spool/propagator-$j")
    (cd "$work" && exec "$bin/event_propagator" --config "$work/propagator.yaml" \
        --endpoint "$scheme://127.0.0.1:$port/event" --period "$period" --duration "$2" \
        --keys-log "$work/keys/propagator-$j.keys" --seed $((seed + j)) --batch-size "$batch" \
        "${spool_args[@]}" >>"$work/logs/propagator-$j.log" 2>&1) &
    propagator_pid[j]=$!
}
for j in $(seq 0 $((propagators - 1))); do
    start_propagator "$j" "$seconds"
done
say "$propagators propagators at one request of $batch event(s) per ${period}s each (${rate} events/s combined) for ${seconds}s, seed $seed"

# --- faults -------------------------------------------------------------------------------
if ((spool)); then
    # And the outage of both consumers, which runs beside these (see below).
    faults=(pkill pkill pkill fast immediate partition)
    hold=5
elif ((seconds >= 40)); then
    faults=(kill kill kill fast fast immediate stop readonly freeze partition)
    hold=5
else
    faults=(kill fast immediate stop readonly freeze)
    hold=3
fi
# Longer than statement_timeout_seconds + 0.5 s (5.5 s with the shipped defaults): the
# consumers' deadlines and TCP user timeouts fire, and their sessions are replaced afterwards.
partition_hold=8
if [[ " ${faults[*]} " == *" partition "* ]] && ! can_partition; then
    why="the silent-port fault needs root and iptables (Debian: apt-get install iptables)"
    [[ ${EVENTS_TEST_PRIVILEGED:-} == require ]] && die "$why; EVENTS_TEST_PRIVILEGED=require does not allow leaving it out"
    say "$why: left out"
    mapfile -t faults < <(printf '%s\n' "${faults[@]}" | grep -vx partition)
fi
# Shuffle, then give each fault a random moment within its own slice of the run (leaving the
# first and last seconds quiet), one fault at a time.
for ((i = ${#faults[@]} - 1; i > 0; i--)); do
    j=$((RANDOM % (i + 1)))
    tmp=${faults[i]} faults[i]=${faults[j]} faults[j]=$tmp
done
margin=$((seconds >= 40 ? 5 : 1))
window=$((seconds - 2 * margin))
slice_ms=$((window * 1000 / ${#faults[@]}))
at_ms=()
for k in "${!faults[@]}"; do
    at_ms[k]=$((margin * 1000 + k * slice_ms + (RANDOM * 32768 + RANDOM) % (slice_ms * 2 / 3 + 1)))
done
total_faults=${#faults[@]}
outage_state=over
if ((spool)); then
    # The outage of both consumers runs beside the other faults: it starts early enough to end
    # 20 s before the run does (the spools drain), and at least one propagator kill falls inside
    # it, so a propagator is restarted on a spool holding the outage's events and replays them
    # while the consumers are still down.
    latest_ms=$(((seconds - margin - outage - 20) * 1000))
    outage_at_ms=$((margin * 1000 + (RANDOM * 32768 + RANDOM) % (latest_ms - margin * 1000 + 1)))
    outage_end_ms=$((outage_at_ms + outage * 1000))
    inside=0
    for k in "${!faults[@]}"; do
        if [[ ${faults[k]} == pkill ]] && ((at_ms[k] > outage_at_ms + 2000 && at_ms[k] < outage_end_ms - 2000)); then
            inside=1
        fi
    done
    if ((!inside)); then
        for k in "${!faults[@]}"; do
            if [[ ${faults[k]} == pkill ]]; then
                at_ms[k]=$((outage_at_ms + 5000 + (RANDOM * 32768 + RANDOM) % ((outage - 10) * 1000)))
                break
            fi
        done
    fi
    # The silent port is meant for live consumers: one drawn inside the outage (or ending in
    # its first moments) moves to 2 s after it, while the spools drain into the consumers.
    for k in "${!faults[@]}"; do
        if [[ ${faults[k]} == partition ]] && ((at_ms[k] > outage_at_ms - (partition_hold + 1) * 1000 && at_ms[k] < outage_end_ms + 2000)); then
            at_ms[k]=$((outage_end_ms + 2000))
        fi
    done
    # Back into the order of their moments.
    mapfile -t order < <(for k in "${!faults[@]}"; do echo "${at_ms[k]} ${faults[k]}"; done | sort -n)
    for k in "${!order[@]}"; do
        at_ms[k]=${order[k]%% *} faults[k]=${order[k]#* }
    done
    outage_state=pending
    total_faults=$((total_faults + 1))
fi
elapsed_ms() { awk -v s="$started_at" -v n="$(date +%s.%N)" 'BEGIN { printf "%d", (n - s) * 1000 }'; }
sleep_until_ms() {
    local now
    now=$(elapsed_ms)
    if (($1 > now)); then sleep "$(awk -v d=$(($1 - now)) 'BEGIN { printf "%.3f", d / 1000 }')"; fi
}
timeline=()
injected=0
# record T0 WHAT: a fault injected at T0 ms into the run, done now.
record() {
    injected=$((injected + 1))
    timeline+=("$(printf '%6.1fs  %-50s (%.1fs)' "$(awk -v t="$1" 'BEGIN { print t / 1000 }')" "$2" \
        "$(awk -v a="$1" -v b="$(elapsed_ms)" 'BEGIN { print (b - a) / 1000 }')")")
    say "fault $injected/$total_faults: ${timeline[-1]}"
}
# The spool's outage: starts or ends it when that is due before $1 ms into the run.
outage_due_before() {
    local next
    while [[ $outage_state != over ]]; do
        next=$outage_end_ms
        [[ $outage_state == pending ]] && next=$outage_at_ms
        (($1 >= next)) || return 0
        sleep_until_ms "$next"
        if [[ $outage_state == pending ]]; then
            outage_t0=$(elapsed_ms)
            for i in "${!consumer_pid[@]}"; do
                kill -KILL "${consumer_pid[i]}"
                wait "${consumer_pid[i]}" 2>/dev/null || true
            done
            say "both consumers SIGKILLed at $(awk -v t="$outage_t0" 'BEGIN { printf "%.1f", t / 1000 }')s, down for $outage s"
            outage_state=on
        else
            for i in "${!consumer_pid[@]}"; do start_consumer "$i"; done
            outage_state=over
            record "$outage_t0" "both consumers SIGKILLed, down for $outage s, restarted"
        fi
    done
}
for k in "${!faults[@]}"; do
    outage_due_before "${at_ms[k]}"
    sleep_until_ms "${at_ms[k]}"
    victim=$((RANDOM % consumers))
    t0=$(elapsed_ms)
    case ${faults[k]} in
    pkill)
        victim=$((RANDOM % propagators))
        # The schedule keeps this within the run; a propagator that has exited all the same is
        # a failure of the run, not of the script.
        kill -0 "${propagator_pid[victim]}" 2>/dev/null ||
            die "propagator $victim (pid ${propagator_pid[victim]}) exited before the run's end; see $work/logs/propagator-$victim.log"
        kill -KILL "${propagator_pid[victim]}"
        wait "${propagator_pid[victim]}" 2>/dev/null || true
        sleep "0.$((2 + RANDOM % 8))"
        left=$((seconds - $(elapsed_ms) / 1000))
        start_propagator "$victim" $((left > 1 ? left : 1))
        what="SIGKILL propagator $victim, restarted on its spool"
        [[ $outage_state == on ]] && what="SIGKILL propagator $victim (consumers down), restarted"
        ;;
    kill)
        kill -KILL "${consumer_pid[victim]}"
        wait "${consumer_pid[victim]}" 2>/dev/null || true
        sleep "0.$((2 + RANDOM % 8))"
        start_consumer "$victim"
        what="SIGKILL consumer $victim, restarted"
        ;;
    fast)
        pg_restart fast || die "pg_ctl restart -m fast failed (see $pg_log)"
        what="PostgreSQL restart -m fast"
        ;;
    immediate)
        pg_restart immediate || die "pg_ctl restart -m immediate failed (see $pg_log)"
        what="PostgreSQL restart -m immediate (crash recovery)"
        ;;
    stop)
        kill -STOP "${consumer_pid[victim]}"
        sleep 5
        kill -CONT "${consumer_pid[victim]}"
        what="SIGSTOP consumer $victim for 5 s, SIGCONT"
        ;;
    readonly)
        sql_admin -c 'ALTER DATABASE events SET default_transaction_read_only = on' >/dev/null
        sql_admin -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = 'events' AND application_name = 'event_consumer'" >/dev/null
        sleep "$hold"
        sql_admin -c 'ALTER DATABASE events RESET default_transaction_read_only' >/dev/null
        what="database read-only for $hold s (sessions terminated)"
        ;;
    freeze)
        mapfile -t frozen_pids < <(pg_processes)
        kill -STOP "${frozen_pids[@]}"
        sleep "$hold"
        kill -CONT "${frozen_pids[@]}"
        frozen_pids=()
        what="PostgreSQL frozen (SIGSTOP) for $hold s, SIGCONT"
        ;;
    partition)
        # Answers first: what commits in these 0.2 s is stored and never acknowledged.
        partition_rule -I --sport && partitioned+=(--sport)
        sleep 0.2
        partition_rule -I --dport && partitioned+=(--dport)
        sleep "$partition_hold"
        for direction in "${partitioned[@]}"; do partition_rule -D "$direction"; done
        partitioned=()
        what="database port silent (iptables DROP, answers first) for $partition_hold s"
        ;;
    esac
    record "$t0" "$what"
done
outage_due_before $((seconds * 1000))

# --- wait for the propagators -------------------------------------------------------------
# They stop starting sends at --duration and finish the event in flight, retries included.
if ((spool)); then
    # Exit 3: nothing failed, events kept in the spool (counted below).
    wait_for_propagators "$seconds" 3
else
    wait_for_propagators "$seconds"
fi
for i in "${!consumer_pid[@]}"; do
    kill -TERM "${consumer_pid[i]}" 2>/dev/null || true
    wait "${consumer_pid[i]}" 2>/dev/null || true
done
consumer_pid=() propagator_pid=()

# --- the check ----------------------------------------------------------------------------
cd "$work"
keys_vs_table
spooled_n=0
if ((spool)); then
    # A key still in its propagator's spool is kept, not lost.
    "$bin/spool_keys" spool/* | sort -u >spooled
    spooled_n=$(wc -l <spooled)
    # Kept: generated, not stored, in a spool. The others still spooled were stored and their
    # answer lost (cut at the shutdown deadline): the next replay gets "already stored".
    comm -12 lost spooled >kept
    kept_n=$(wc -l <kept)
    comm -23 lost spooled >lost.kept
    mv lost.kept lost
    lost_n=$(wc -l <lost)
    # None when every kill found its spool empty (grep finds nothing: not a failure).
    replays=$({ grep -ho 'replaying [0-9]* event' logs/propagator-*.log || true; } | awk '{ n += $2 } END { print n + 0 }')
fi
lateness_max=$(sed -n 's/.*lateness_max=\([^ ]*\).*/\1/p' logs/propagator-*.log | awk '
    { v = $1; if (v ~ /ms$/) { sub(/ms$/, "", v); v /= 1000 } else if (v ~ /s$/) sub(/s$/, "", v);
      if (v + 0 > max) max = v + 0 } END { printf "%.3f", max }')
sum_field() { sed -n "s/.*summary:.* $1=\\([0-9]*\\).*/\\1/p" logs/propagator-*.log | awk '{ n += $1 } END { print n + 0 }'; }
retries=$(sum_field retries)
skipped=$(sum_field skipped_slots)
duplicates_acked=$(sum_field duplicates)
sent_rate=$(awk -v n="$n_generated" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')

printf '\nchaos: %s s, %s consumers, %s propagators (%s events/s asked, %s/s generated), seed %s\n' \
    "$seconds" "$consumers" "$propagators" "$rate" "$sent_rate" "$seed"
printf 'transport:          %s, %s event(s) a request\n' "$transport" "$batch"
printf 'faults:\n'
printf '  %s\n' "${timeline[@]}" | sort -n
printf 'events generated:   %s\n' "$n_generated"
printf 'stored:             %s (rows %s)\n' "$stored" "$n_rows"
if ((spool)); then
    printf 'still spooled:      %s: %s not stored yet (generated = stored + kept: %s = %s + %s), %s stored with the answer lost\n' \
        "$spooled_n" "$kept_n" "$n_generated" "$stored" "$kept_n" "$((spooled_n - kept_n))"
    printf 'replayed:           %s events taken from spools at restarts\n' "$replays"
fi
printf 'lost:               %s\n' "$lost_n"
printf 'duplicated:         %s (keys stored more than once %s, rows with a key in no log %s)\n' \
    "$duplicated" "$repeated_n" "$strangers_n"
printf 'faults injected:    %s\n' "$injected"
printf 'longest stall:      %s s without a new row; propagator lateness max %s s\n' "$stall" "$lateness_max"
printf 'retries:            %s (answered "already stored": %s); schedule slots skipped while retrying: %s\n' \
    "$retries" "$duplicates_acked" "$skipped"
printf 'consumer log:       %s lines about the database (outages start, change cause, end: not per request)\n' \
    "$(cat logs/consumer-*.log | grep -c 'database 127.0.0.1:' || true)"
printf 'propagators:        %s of %s exited 0%s\n' "$((propagators - failed_propagators))" "$propagators" \
    "$( ((spool)) && echo ' or 3 (events kept in the spool)')"

status=0
((log_dups == 0)) || { say "the keys logs repeat $log_dups keys (a propagator bug)"; status=1; }
((lost_n == 0)) || { say "lost keys (first 5):"; head -n 5 lost >&2; status=1; }
((duplicated == 0)) || { say "duplicated (first 5):"; head -n 5 repeated strangers >&2; status=1; }
((failed_propagators == 0)) || status=1
((injected == total_faults)) || { say "only $injected of $total_faults faults were injected"; status=1; }
if ((status == 0)); then echo "chaos: PASS"; else echo "chaos: FAIL"; fi
exit "$status"
