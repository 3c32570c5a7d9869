#!/usr/bin/env bash
# make bench: throughput of the consumer next to PostgreSQL's own ceiling, in one run.
#
# Builds the release binaries, starts a throwaway PostgreSQL cluster with DEFAULT durability
# (the harness's pg_cluster, --fsync on: never turned off here), applies schema.sql, then
# measures in pairs close in time, so each ratio compares figures taken under the same noise:
#   pgbench, one single-row INSERT per transaction into `events` (bench/insert.sql), at 1, 8 and
#   32 clients, and the consumer under wrk (bench/post_event.lua) at 1, 8 and 64 keep-alive
#   connections: stored events/s, latency p50/p99/max, peak RSS, and rows added == 2xx answers;
# in the same round, at one connection: a do-nothing HTTP server (bench's null_http) under the
# same wrk script as the round-trip reference, and pgbench at 1 client with the consumer's
# array insert (bench/consumer_statement.sql, batches of two or more) next to the keyed INSERT
# it uses for one event (bench/keyed_insert.sql);
# in the same round, right after each consumer run, a second consumer on the same database
# serving HTTPS (certificates from a throwaway CA that openssl makes in the temporary
# directory) under the same wrk script at the same connections, for the ratio HTTPS ÷ plain,
# and at 8 connections new connections a second with bench's connect_rate (a full TLS
# handshake per connection, and plain TCP as the reference);
# in the same round, batches of 100 events: bench's write_paths writes the rows straight into
# PostgreSQL at 8 connections by binary COPY (the ceiling) and by the write paths that keep the
# contract (unnest, multi-row VALUES, COPY into a staging table then INSERT), and bench's
# batch_load posts them to POST /events at 1, 8 and 64 connections, and gzipped at 8;
# then the propagator as a 1 kHz pacer and as a load generator (--period 0 --batch-size 100),
# and without and with its durable spool (single events at 8 in flight, batches of 100; also
# alone: scripts/bench-spool.sh), the time from start to ready, idle RSS and binary
# sizes; last, scripts/bench-retention.sh (throughput while a backlog of expired rows is
# pruned, appended to the report). This script only runs things and collects their raw outputs; bench_report (bench/src)
# computes the percentiles, medians, ratios and targets and writes bench/RESULTS.md
# (BENCH_RESULTS moves it). The raw outputs are kept in bench/out/ (not committed). What this
# script shares with make bench-compare (the cluster, the consumers, the measurements) is
# scripts/bench-lib.sh's.
#
# Settings (environment): BENCH_SECONDS per measurement (default 10), BENCH_ROUNDS of the
# measurements (default 3; the median round is reported), PG_BINDIR (initdb, pg_ctl, pgbench,
# psql), CARGO_TARGET_DIR (where cargo builds; default target/), BENCH_WORKERS
# (consumer.workers for a tuning run; default: the configuration's default),
# BENCH_CONSUMER_BIN (a consumer binary to bench instead of the freshly built one, e.g. a build
# of an earlier commit, so before and after are measured by the same script in one session).
# Everything it starts is stopped and its temporary directory removed on exit, also on Ctrl-C.
# Needs wrk (installed from Debian when missing and root), openssl and curl. Loopback only.
# About 14 minutes after the build.
set -euo pipefail

me=bench.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
results=${BENCH_RESULTS:-$repo/bench/RESULTS.md}

[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS '$seconds' is not a whole number of seconds"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS '$rounds' is not a positive whole number"
[[ -z ${BENCH_WORKERS:-} || $BENCH_WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS '$BENCH_WORKERS' is not a positive number"
if [[ -n ${BENCH_CONSUMER_BIN:-} ]]; then
    [[ $BENCH_CONSUMER_BIN == /* ]] || BENCH_CONSUMER_BIN=$PWD/$BENCH_CONSUMER_BIN
    [[ -x $BENCH_CONSUMER_BIN ]] || die "BENCH_CONSUMER_BIN=$BENCH_CONSUMER_BIN is not an executable file: point it at an event_consumer binary"
fi

bench_need_tools

# ---------------------------------------------------------------------------------------------
# Build.

say "building release binaries (cargo build --release)"
packages=(-p bench)
[[ -n ${BENCH_CONSUMER_BIN:-} ]] || packages+=(-p event_consumer)
(cd "$repo" && cargo build --release -q "${packages[@]}") || die "cargo build --release ${packages[*]} failed"
# The commit (and whether the crates differ from it) as built, not as HEAD is when the run ends.
built_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
built_dirty=
if git -C "$repo" status --porcelain --untracked-files=no -- event_consumer common 2>/dev/null | grep -q .; then
    built_dirty=" + uncommitted changes to event_consumer/common"
fi
bin=${CARGO_TARGET_DIR:-$repo/target}/release
[[ $bin == /* ]] || bin=$repo/$bin
consumer_bin=${BENCH_CONSUMER_BIN:-$bin/event_consumer}
propagator_built=yes
(cd "$repo" && cargo build --release -q -p event_propagator) || {
    propagator_built=no
    say "event_propagator does not build right now; its pacer row will say so"
}

# ---------------------------------------------------------------------------------------------
# Cleanup, armed before anything is started.

bench_make_dirs bench
consumer_pid=
tls_pid=
null_pid=

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    # The raw outputs are kept in bench/out/ for a closer look.
    bench_cleanup "$repo/bench/out" "$null_pid" "$consumer_pid" "$tls_pid"
    exit "$status"
}
bench_traps

# ---------------------------------------------------------------------------------------------
# The cluster (bench_start_cluster: default durability, checked).

bench_start_cluster "$tmp/pg"
# The staging table of the measured COPY-then-INSERT write path (write_paths --path staging).
# Only this benchmark creates it: the consumer does not use that path (see bench/RESULTS.md), so
# schema.sql stays one table.
sql "CREATE UNLOGGED TABLE IF NOT EXISTS events_staging (n bigint NOT NULL,
    event_type text NOT NULL, event_payload text NOT NULL, idempotency_key text)"

# ---------------------------------------------------------------------------------------------
# The consumer and the round-trip reference.

{ read -r consumer_port && read -r null_port && read -r tls_port; } < <(pg_cluster free-port 3) ||
    die "found no free ports"
write_config "$tmp/config.yaml" "$consumer_port"
base=http://127.0.0.1:$consumer_port
# The HTTPS consumer: the same configuration with a certificate for localhost and 127.0.0.1.
pki=$tmp/pki
make_test_pki "$pki"
write_config "$tmp/config-tls.yaml" "$tls_port" "  tls_cert_file: $pki/server.pem
  tls_key_file: $pki/server.key"
tls_base=https://127.0.0.1:$tls_port

say "starting the consumer on $base${BENCH_CONSUMER_BIN:+ ($consumer_bin)}"
start_consumer "$consumer_bin" "$tmp/config.yaml" "$raw/consumer.log" "$consumer_port" ""
consumer_pid=$started_pid
ready_ms=$((ready_us / 1000)).$((ready_us % 1000 / 100))
sleep 1
idle_rss_kb=$(rss_kb "$consumer_pid" VmRSS)
say "ready after $ready_ms ms; idle RSS $idle_rss_kb kB"

say "starting the HTTPS consumer on $tls_base"
start_consumer "$consumer_bin" "$tmp/config-tls.yaml" "$raw/consumer-tls.log" "$tls_port" "$pki/ca.pem"
tls_pid=$started_pid
# What an OpenSSL client (wrk's library) and the consumer agree on (s_client -brief: protocol,
# cipher suite, key exchange), for the report.
tls_negotiated=$(openssl s_client -brief -connect "127.0.0.1:$tls_port" -servername localhost \
    -CAfile "$pki/ca.pem" </dev/null 2>&1 |
    awk -F': ' '/^(Protocol version|Ciphersuite|Peer Temp Key)/ { printf "%s%s", sep, $2; sep = ", " }')

"$bin/null_http" "$null_port" >"$raw/null_http.log" 2>&1 &
null_pid=$!
for _ in $(seq 100); do port_in_use "$null_port" && break; sleep 0.05; done
port_in_use "$null_port" || { cat "$raw/null_http.log" >&2; die "null_http did not listen on $null_port"; }

# ---------------------------------------------------------------------------------------------
# Measurements: each writes its raw output to $raw/r<round>-<tool>-<name>.* (see bench/src/inputs.rs).

# run_pgbench ROUND NAME SCRIPT CLIENTS
run_pgbench() { measure_pgbench "$raw/r$1-pgbench-$2" "$3" "$4"; }

# run_wrk ROUND NAME TARGET CONNS: wrk with bench/post_event.lua against TARGET (consumer,
# tls: the HTTPS consumer, null: null_http); for a consumer also the rows it added, its own
# count of stored events, its peak RSS and the CPU (bench-lib.sh's measure_wrk).
run_wrk() {
    local out=$raw/r$1-wrk-$2 conns=$4
    case $3 in
    consumer) measure_wrk "$out" "$conns" "$base" "$consumer_pid" ;;
    tls) measure_wrk "$out" "$conns" "$tls_base" "$tls_pid" "$pki/ca.pem" ;;
    null) measure_wrk "$out" "$conns" "http://127.0.0.1:$null_port" ;;
    esac
}

# run_connect ROUND MODE CONNS: bench's connect_rate, a new connection per GET /healthz, over
# TLS (a full handshake each) or plain TCP. No rows are written, so no checkpoint before it.
run_connect() {
    local round=$1 mode=$2 conns=$3 out args
    out=$raw/r$round-connect-$mode-$conns
    if [[ $mode == tls ]]; then
        args=(--port "$tls_port" --ca "$pki/ca.pem")
    else
        args=(--port "$consumer_port")
    fi
    say "connect_rate $mode: $conns connections, a new one per request, ${seconds}s"
    "$bin/connect_rate" "${args[@]}" --connections "$conns" --seconds "$seconds" >"$out.out" 2>&1 ||
        { cat "$out.out" >&2; die "connect_rate failed"; }
    grep '^CONNECT ' "$out.out" >&2 || { cat "$out.out" >&2; die "connect_rate printed no CONNECT line"; }
}

# run_write ROUND PATH CONNS: bench's write_paths, batches of 100 rows straight into
# PostgreSQL (COPY, the ceiling, or one of the write paths that keep the contract).
run_write() {
    local round=$1 path=$2 conns=$3 out
    out=$raw/r$round-write-$path-$conns
    say "write_paths $path: $conns connections, batches of 100, ${seconds}s"
    "$bin/write_paths" --port "$pg_port" --path "$path" --connections "$conns" \
        --seconds "$seconds" --run "r$round-$path-$conns-$RANDOM" >"$out.out" 2>&1 ||
        { cat "$out.out" >&2; die "write_paths failed"; }
    grep '^WRITE ' "$out.out" >&2 || { cat "$out.out" >&2; die "write_paths printed no WRITE line"; }
}

# run_batch ROUND NAME CONNS [--gzip]: bench's batch_load, batches of 100 to POST /events on
# the plain consumer (bench-lib.sh's measure_batch).
run_batch() {
    local round=$1 name=$2 conns=$3
    shift 3
    measure_batch "$raw/r$round-batch-$name" "$consumer_port" "$consumer_pid" "$conns" "$@"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Pairs close in time: (pgbench clients, consumer connections), in BENCH_ROUNDS rounds; the
# one-connection references run right after the one-connection pair of the same round.
for ((round = 1; round <= rounds; round++)); do
    ((rounds == 1)) || say "round $round of $rounds"
    for pair in "1 1" "8 8" "32 64"; do
        read -r clients conns <<<"$pair"
        quiet
        run_pgbench "$round" "insert-$clients" insert.sql "$clients"
        quiet
        run_wrk "$round" "consumer-$conns" consumer "$conns"
        quiet
        run_wrk "$round" "tls-$conns" tls "$conns"
        if ((conns == 8)); then
            run_connect "$round" tls 8
            run_connect "$round" plain 8
        fi
        if ((conns == 1)); then
            quiet
            run_wrk "$round" null-1 null 1
            quiet
            run_pgbench "$round" statement-1 consumer_statement.sql 1
            quiet
            run_pgbench "$round" keyed-1 keyed_insert.sql 1
        fi
    done
    # Batches: COPY's ceiling, the consumer's POST /events, then the other write paths of the
    # same rows, all in this round.
    quiet
    run_write "$round" copy 8
    for conns in 1 8 64; do
        quiet
        run_batch "$round" "plain-$conns" "$conns"
    done
    quiet
    run_batch "$round" gzip-8 8 --gzip
    for path in unnest values staging; do
        quiet
        run_write "$round" "$path" 8
    done
done

# The propagator as a pacer: 10 000 events at 1 kHz; its last stderr line is the summary.
if [[ $propagator_built == yes ]]; then
    say "propagator: --period 0.001 --count 10000"
    before=$(count_rows)
    # LOG_LEVEL=info: the summary is an info line (per-event lines are debug).
    (cd "$tmp" && exec env LOG_LEVEL=info "$bin/event_propagator" --config "$tmp/config.yaml" \
        --period 0.001 --count 10000 >"$raw/propagator.out" 2>"$raw/propagator.err") &
    load_pid=$!
    wait "$load_pid" || say "the propagator exited with status $? (see its summary)"
    load_pid=
    printf 'rows_added=%s\n' "$(($(count_rows) - before))" >"$raw/propagator.facts"
    pacer="no summary line on stderr (the propagator is still being finished)"
else
    pacer="not built (cargo build -p event_propagator failed)"
fi
# The propagator as a load generator: batches of 100 as fast as 8 sends in flight allow.
if [[ $propagator_built == yes ]]; then
    quiet
    say "propagator: --period 0 --batch-size 100 --max-in-flight 8 --count 3000 (300 000 events)"
    before=$(count_rows)
    (cd "$tmp" && exec env LOG_LEVEL=info "$bin/event_propagator" --config "$tmp/config.yaml" \
        --period 0 --batch-size 100 --max-in-flight 8 --count 3000 \
        >"$raw/propagator-load.out" 2>"$raw/propagator-load.err") &
    load_pid=$!
    wait "$load_pid" || say "the propagator exited with status $? (see its summary)"
    load_pid=
    printf 'rows_added=%s\n' "$(($(count_rows) - before))" >"$raw/propagator-load.facts"
fi
# The propagator without and with its spool (bench-lib.sh's measure_spool), every round.
if [[ $propagator_built == yes ]]; then
    for round in $(seq 1 "$rounds"); do
        quiet
        say "propagator without and with --spool-dir, round $round of $rounds"
        measure_spool "$round" "$tmp/config.yaml"
    done
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
# Disk per event: the table and its indexes after every run above, vacuumed (the staging
# table's dead rows are not counted: it is not the consumer's).
sql "VACUUM ANALYZE events"
disk=$(sql "SELECT count(*) || ' ' || pg_relation_size('events') || ' ' || pg_indexes_size('events') FROM events")

# Sizes of stripped copies (the release profile strips already; this makes sure).
stripped_size() {
    [[ -f $1 ]] || { echo "-"; return; }
    if command -v strip >/dev/null && strip -o "$tmp/stripped" "$1" 2>/dev/null; then
        stat -c %s "$tmp/stripped"
    else
        stat -c %s "$1"
    fi
}

{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=$built_commit"
    echo "dirty=$([[ -n ${BENCH_CONSUMER_BIN:-} ]] || echo "$built_dirty")"
    echo "consumer_bin=${BENCH_CONSUMER_BIN:-}"
    echo "seconds=$seconds"
    echo "cores=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "ram=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "pg_version=$(sql 'SHOW server_version')"
    echo "durability=$durability"
    echo "kernel=$(uname -r)"
    echo "wrk_version=$(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "load_start=$load_start"
    echo "load_end=$load_end"
    echo "ready_ms=$ready_ms"
    echo "idle_rss_kb=$idle_rss_kb"
    echo "peak_since=$peak_since"
    echo "tls_negotiated=$tls_negotiated"
    echo "tls_certificates=openssl $(openssl version | cut -d' ' -f2), ECDSA P-256 (scripts/lib.sh make_test_pki)"
    echo "size_consumer=$(stripped_size "$consumer_bin")"
    echo "size_propagator=$(stripped_size "$bin/event_propagator")"
    echo "workers=${BENCH_WORKERS:-}"
    echo "pacer=$pacer"
    read -r disk_rows disk_table disk_indexes <<<"$disk"
    echo "disk_rows=$disk_rows"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "disk_table_bytes=$disk_table"
    echo "disk_index_bytes=$disk_indexes"
} >"$raw/meta.env"

report=$("$bin/bench_report" report --dir "$raw" --rounds "$rounds") || die "bench_report could not write the report (the reason is above)"
echo
echo "$report"
mkdir -p "$(dirname "$results")"
printf '%s\n' "$report" >"$results"
say "written to ${results#"$repo"/}"

# Retention last, on a cluster of its own: throughput while a backlog is pruned, appended.
BENCH_APPEND=1 BENCH_RESULTS=$results "$repo/scripts/bench-retention.sh"
