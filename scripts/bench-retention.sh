#!/usr/bin/env bash
# The retention part of make bench (scripts/bench.sh runs it last; it also runs alone): the
# consumer's throughput while a backlog of expired rows is pruned, next to the same load
# without retention, in one run on one throwaway cluster with default durability.
#
# BENCH_ROUNDS rounds (default 3), interleaved so drift favours neither side: at each load
# (wrk POST /event at 8 and 64 connections, batch_load batches of 100 at 8) odd rounds measure
# "off" then "on", even rounds "on" then "off", a CHECKPOINT and 1 s pause before each:
#   off: a consumer without retention (started once, kept for the whole run) under the load;
#   on:  BENCH_BACKLOG rows (default 1,000,000) received two days ago inserted and vacuumed;
#        then a second consumer with retention_days: 1 is started, which prunes that backlog
#        from its start, and the same load runs at once: its latency is the first prune's
#        stall of POST /event; the rows still expired when the load ends say that the prune
#        lasted the whole run; then that consumer is stopped, what is left of the backlog
#        deleted and vacuumed.
# bench_report retention computes the medians and ratios and writes the section; this script
# prints it, and appends it to BENCH_RESULTS (default bench/RESULTS.md) when BENCH_APPEND=1
# (bench.sh sets it). Raw outputs (rR-… per round R) are kept in bench/out-retention/.
# Settings: BENCH_SECONDS (default 10), BENCH_ROUNDS, BENCH_BACKLOG, PG_BINDIR,
# CARGO_TARGET_DIR. About 3 minutes a round after the build.
set -euo pipefail

me=bench-retention.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
seconds=${BENCH_SECONDS:-10}
backlog=${BENCH_BACKLOG:-1000000}
rounds=${BENCH_ROUNDS:-3}
results=${BENCH_RESULTS:-$repo/bench/RESULTS.md}
retention_days=1
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS '$seconds' is not a whole number of seconds"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS '$rounds' is not a positive whole number"
[[ $backlog =~ ^[1-9][0-9]*$ ]] || die "BENCH_BACKLOG '$backlog' is not a positive whole number"

bench_need_tools
say "building release binaries (cargo build --release)"
(cd "$repo" && cargo build --release -q -p bench -p event_consumer) || die "cargo build --release failed"
bin=${CARGO_TARGET_DIR:-$repo/target}/release
[[ $bin == /* ]] || bin=$repo/$bin

bench_make_dirs bench-retention
off_pid=
on_pid=
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    bench_cleanup "$repo/bench/out-retention" "$on_pid" "$off_pid"
    exit "$status"
}
bench_traps

bench_start_cluster "$tmp/pg"
{ read -r off_port && read -r on_port; } < <(pg_cluster free-port 2) || die "found no free ports"
write_config "$tmp/off.yaml" "$off_port"
write_config "$tmp/on.yaml" "$on_port" "  retention_days: $retention_days"
start_consumer "$bin/event_consumer" "$tmp/off.yaml" "$raw/consumer-off.log" "$off_port" ""
off_pid=$started_pid

expired() { sql "SELECT count(*) FROM events WHERE received_at < now() - interval '$retention_days days'"; }

# measure ROUND POINT SIDE PORT PID: the load of POINT (wrk-N or batch-N) on one consumer.
measure() {
    local round=$1 point=$2 side=$3 port=$4 pid=$5 conns=${2#*-}
    case $point in
    wrk-*) measure_wrk "$raw/r$round-wrk-retention-$side-$conns" "$conns" "http://127.0.0.1:$port" "$pid" ;;
    batch-*) measure_batch "$raw/r$round-batch-retention-$side-$conns" "$port" "$pid" "$conns" ;;
    esac
}

# without ROUND POINT: the load on the consumer without retention.
without() {
    quiet
    measure "$1" "$2" off "$off_port" "$off_pid"
}

# with ROUND POINT: a backlog, a consumer with retention started on it, the load at once.
with() {
    local round=$1 point=$2 left
    say "inserting a backlog of $backlog rows received two days ago"
    sql "INSERT INTO events (event_type, event_payload, received_at)
         SELECT 'backlog', 'n=' || i, now() - interval '2 days' - i * interval '1 ms'
         FROM generate_series(1, $backlog) AS i" >/dev/null
    sql "VACUUM ANALYZE events"
    quiet
    start_consumer "$bin/event_consumer" "$tmp/on.yaml" "$raw/consumer-on-r$round-$point.log" "$on_port" "" LOG_LEVEL=info
    on_pid=$started_pid
    measure "$round" "$point" on "$on_port" "$on_pid"
    left=$(expired)
    printf 'backlog=%s\npruned_during=%s\nleft=%s\n' "$backlog" \
        "$(metric "http://127.0.0.1:$on_port" event_consumer_pruned_events_total)" "$left" \
        >"$raw/r$round-retention-on-$point.pruned"
    say "  pruned during the run: $(grep pruned_during "$raw/r$round-retention-on-$point.pruned"), $left left"
    stop_processes "$on_pid" || true # (its last `kill -KILL` fails for a process already gone)
    on_pid=
    sql "DELETE FROM events WHERE received_at < now() - interval '$retention_days days'" >/dev/null
    sql "VACUUM ANALYZE events"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2 == 1)); then order="without with"; else order="with without"; fi
    say "round $round of $rounds (order: $order)"
    for point in wrk-8 wrk-64 batch-8; do
        for side in $order; do
            "$side" "$round" "$point"
        done
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "seconds=$seconds"
    echo "rounds=$rounds"
    echo "backlog=$backlog"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "retention_days=$retention_days"
    echo "load_start=$load_start"
    echo "load_end=$load_end"
} >"$raw/meta.env"

section=$("$bin/bench_report" retention --dir "$raw") || die "bench_report could not write the retention section (the reason is above)"
echo
echo "$section"
if [[ ${BENCH_APPEND:-0} == 1 ]]; then
    printf '\n%s\n' "$section" >>"$results"
    say "appended to ${results#"$repo"/}"
fi
