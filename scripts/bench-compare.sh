#!/usr/bin/env bash
# make bench-compare: two consumer binaries A and B measured against each other, interleaved,
# on one throwaway PostgreSQL cluster with DEFAULT durability (the harness's pg_cluster, --fsync
# on: never turned off here).
#
# Each side runs two consumers for the whole run, one over plain HTTP and one over HTTPS
# (certificates from a throwaway CA that openssl makes in the temporary directory). Round r
# measures every point for A then B when r is odd and for B then A when r is even (A B B A …),
# so a drift of the machine over the run lands on both sides alike; a CHECKPOINT and a 1 s pause
# come before each measurement. The points (COMPARE_POINTS picks some, default all):
#   plain-1 plain-8 plain-64   wrk with bench/post_event.lua at 1, 8, 64 keep-alive connections
#   tls-1 tls-8 tls-64         the same against the side's HTTPS consumer
#   batch-1 batch-8 batch-64   bench's batch_load, batches of 100 to POST /events
#   pgbench-32                 pgbench with bench/insert.sql at 32 clients, once a round (not a
#                              side's: the reference of "64 connections ÷ pgbench 32")
# For each consumer point: stored events/s (rows added ÷ seconds; rows added must equal the 2xx
# answers), latency p50/p99, and the CPU per stored event of the consumer and of PostgreSQL
# (utime + stime ticks over the run ÷ rows added). This script only runs things and collects
# their raw outputs; `bench_report compare` (bench/src/compare.rs) computes the medians and
# ratios and prints the report, which is written to COMPARE_RESULTS and shown.
#
# Settings (environment):
#   COMPARE_A, COMPARE_B          the two event_consumer binaries (required)
#   COMPARE_A_ENV, COMPARE_B_ENV  "VAR=value ..." set for that side's consumers (e.g. an
#                                 experiment switch); values without spaces
#   COMPARE_A_LABEL, COMPARE_B_LABEL  names in the report (default A, B)
#   COMPARE_ROUNDS (default 6), BENCH_SECONDS per measurement (default 10), COMPARE_POINTS
#   COMPARE_RESULTS               the report (default bench/notes/compare-<date>.md)
#   BENCH_WORKERS, PG_BINDIR, CARGO_TARGET_DIR as for make bench (scripts/bench.sh)
# The shared pieces (cluster, consumers, measurements) are scripts/bench-lib.sh's. The raw
# outputs are kept in bench/out-compare/ (not committed). Everything it starts is stopped and
# its temporary directory removed on exit, also on Ctrl-C. Loopback only.
set -euo pipefail

me=bench-compare.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

readonly all_points="plain-1 plain-8 plain-64 tls-1 tls-8 tls-64 batch-1 batch-8 batch-64 pgbench-32"
seconds=${BENCH_SECONDS:-10}
rounds=${COMPARE_ROUNDS:-6}
points=${COMPARE_POINTS:-$all_points}
label_a=${COMPARE_A_LABEL:-A}
label_b=${COMPARE_B_LABEL:-B}
results=${COMPARE_RESULTS:-$repo/bench/notes/compare-$(date -u +%Y-%m-%d).md}

[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS '$seconds' is not a whole number of seconds"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "COMPARE_ROUNDS '$rounds' is not a positive whole number"
[[ -z ${BENCH_WORKERS:-} || $BENCH_WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS '$BENCH_WORKERS' is not a positive number"
for point in $points; do
    [[ " $all_points " == *" $point "* ]] || die "COMPARE_POINTS: unknown point '$point' (the points: $all_points)"
done
[[ -n ${points// /} ]] || die "COMPARE_POINTS is empty (the points: $all_points)"
for side in A B; do
    var=COMPARE_$side
    [[ -n ${!var:-} ]] || die "$var is not set: point it at an event_consumer binary (COMPARE_A=path COMPARE_B=path make bench-compare)"
    [[ ${!var} == /* ]] || printf -v "$var" '%s' "$PWD/${!var}"
    [[ -x ${!var} ]] || die "$var=${!var} is not an executable file: point it at an event_consumer binary"
done
[[ $label_a != "$label_b" ]] || die "COMPARE_A_LABEL and COMPARE_B_LABEL are both '$label_a'"
# The environments, split into VAR=value words for env.
read -r -a env_a <<<"${COMPARE_A_ENV:-}"
read -r -a env_b <<<"${COMPARE_B_ENV:-}"
for word in "${env_a[@]}" "${env_b[@]}"; do
    [[ $word =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "COMPARE_A_ENV/COMPARE_B_ENV: '$word' is not VAR=value"
done

bench_need_tools

say "building the bench tools (cargo build --release -p bench)"
(cd "$repo" && cargo build --release -q -p bench) || die "cargo build --release -p bench failed"
bin=${CARGO_TARGET_DIR:-$repo/target}/release
[[ $bin == /* ]] || bin=$repo/$bin

# ---------------------------------------------------------------------------------------------
# Cleanup, armed before anything is started.

bench_make_dirs compare
# Named apart from the locals of bench-lib.sh's functions (pid, port): bash scopes names
# dynamically, so the cleanup, when a signal lands inside one of them, would see its locals.
declare -A consumer_pid=() consumer_port=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    # The raw outputs are kept in bench/out-compare/ for a closer look.
    bench_cleanup "$repo/bench/out-compare" "${consumer_pid[@]}"
    exit "$status"
}
bench_traps

bench_start_cluster "$tmp/pg"

# ---------------------------------------------------------------------------------------------
# The consumers: plain and HTTPS for each side, all running for the whole run. pid and port are
# keyed by side and protocol: a-plain, a-tls, b-plain, b-tls.

pki=$tmp/pki
make_test_pki "$pki"
{ read -r 'consumer_port[a-plain]' && read -r 'consumer_port[a-tls]' && read -r 'consumer_port[b-plain]' && read -r 'consumer_port[b-tls]'; } \
    < <(pg_cluster free-port 4) || die "found no free ports"
for side in a b; do
    if [[ $side == a ]]; then consumer=$COMPARE_A side_env=("${env_a[@]}"); else consumer=$COMPARE_B side_env=("${env_b[@]}"); fi
    write_config "$tmp/config-$side-plain.yaml" "${consumer_port[$side-plain]}"
    write_config "$tmp/config-$side-tls.yaml" "${consumer_port[$side-tls]}" "  tls_cert_file: $pki/server.pem
  tls_key_file: $pki/server.key"
    say "starting $side's consumers ($consumer${side_env[*]:+ with ${side_env[*]}}) on ports ${consumer_port[$side-plain]} and ${consumer_port[$side-tls]} (HTTPS)"
    start_consumer "$consumer" "$tmp/config-$side-plain.yaml" "$raw/consumer-$side-plain.log" \
        "${consumer_port[$side-plain]}" "" "${side_env[@]}"
    consumer_pid[$side-plain]=$started_pid
    start_consumer "$consumer" "$tmp/config-$side-tls.yaml" "$raw/consumer-$side-tls.log" \
        "${consumer_port[$side-tls]}" "$pki/ca.pem" "${side_env[@]}"
    consumer_pid[$side-tls]=$started_pid
done

# ---------------------------------------------------------------------------------------------
# Measurements: $raw/rR-wrk-SIDE-plain-N.*, rR-wrk-SIDE-tls-N.*, rR-batch-SIDE-N.* and
# rR-pgbench-insert-32.* (see bench/src/inputs.rs and compare.rs).

# measure ROUND SIDE POINT: one consumer point for one side.
measure() {
    local round=$1 side=$2 point=$3 conns=${3##*-}
    quiet
    case $point in
    plain-*)
        measure_wrk "$raw/r$round-wrk-$side-$point" "$conns" "http://127.0.0.1:${consumer_port[$side-plain]}" \
            "${consumer_pid[$side-plain]}" ;;
    tls-*)
        measure_wrk "$raw/r$round-wrk-$side-$point" "$conns" "https://127.0.0.1:${consumer_port[$side-tls]}" \
            "${consumer_pid[$side-tls]}" "$pki/ca.pem" ;;
    batch-*)
        measure_batch "$raw/r$round-batch-$side-$conns" "${consumer_port[$side-plain]}" "${consumer_pid[$side-plain]}" "$conns" ;;
    esac
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2 == 1)); then order="a b"; else order="b a"; fi
    say "round $round of $rounds (order: $order)"
    for point in $points; do
        if [[ $point == pgbench-32 ]]; then
            quiet
            measure_pgbench "$raw/r$round-pgbench-insert-32" insert.sql 32
            continue
        fi
        for side in $order; do
            measure "$round" "$side" "$point"
        done
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "seconds=$seconds"
    echo "points=$points"
    echo "label_a=$label_a"
    echo "label_b=$label_b"
    echo "bin_a=$COMPARE_A"
    echo "bin_b=$COMPARE_B"
    echo "env_a=${COMPARE_A_ENV:-}"
    echo "env_b=${COMPARE_B_ENV:-}"
    echo "cores=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "pg_version=$(sql 'SHOW server_version')"
    echo "durability=$durability"
    echo "load_start=$load_start"
    echo "load_end=$load_end"
    echo "peak_since=$peak_since"
    echo "clk_tck=$(getconf CLK_TCK)"
} >"$raw/meta.env"

report=$("$bin/bench_report" compare --dir "$raw" --rounds "$rounds") || die "bench_report could not write the report (the reason is above)"
echo
echo "$report"
mkdir -p "$(dirname "$results")"
printf '%s\n' "$report" >"$results"
say "written to ${results#"$repo"/}"
