#!/usr/bin/env bash
# make bench-spool: the propagator's load-generator throughput without and with its durable
# spool (--spool-dir), alone: a throwaway cluster with default durability, one consumer, then
# BENCH_ROUNDS (3) rounds of bench-lib.sh's measure_spool (single events at --max-in-flight 8,
# batches of 100; each pair back to back) and bench_report's spool section on stdout. make bench
# measures the same within its run; this is the quick look (about a minute a round). The raw
# outputs are kept in bench/out-spool/.
set -euo pipefail

me=bench-spool.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
rounds=${BENCH_ROUNDS:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS '$rounds' is not a positive whole number"

(cd "$repo" && cargo build --release -q -p bench -p event_consumer -p event_propagator) ||
    die "cargo build --release failed"
bin=${CARGO_TARGET_DIR:-$repo/target}/release
[[ $bin == /* ]] || bin=$repo/$bin

bench_make_dirs bench-spool
consumer_pid=
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    bench_cleanup "$repo/bench/out-spool" "$consumer_pid"
    exit "$status"
}
bench_traps

bench_start_cluster "$tmp/pg"
consumer_port=$(pg_cluster free-port 1) || die "found no free port"
write_config "$tmp/config.yaml" "$consumer_port"
start_consumer "$bin/event_consumer" "$tmp/config.yaml" "$raw/consumer.log" "$consumer_port" ""
consumer_pid=$started_pid
for round in $(seq 1 "$rounds"); do
    quiet
    say "round $round of $rounds"
    measure_spool "$round" "$tmp/config.yaml"
done
"$bin/bench_report" spool --dir "$raw" --rounds "$rounds"
