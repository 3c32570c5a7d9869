# shellcheck shell=bash disable=SC2154
# (SC2154: repo, cluster_port and the like are lib.sh's; tmp, logs, seconds, bin the caller's.)
# What scripts/bench.sh (make bench) and scripts/bench-compare.sh (make bench-compare) share,
# sourced after lib.sh: the tools, the throwaway cluster with default durability, starting and
# stopping consumers, the counters read around a measurement (rows, /metrics, CPU ticks, peak
# RSS), and the measurements themselves, each writing its raw outputs under one name OUT:
#   measure_pgbench OUT SCRIPT CLIENTS     OUT.out (pgbench's report), OUT.latency
#   measure_wrk OUT CONNS URL [PID [CA]]   OUT.out (post_event.lua's BENCH line); for a consumer
#                                          (PID given) also OUT.facts and OUT.cpu
#   measure_batch OUT PORT PID CONNS [ARG...]  batch_load's BATCH line, OUT.facts, OUT.cpu
#   measure_spool ROUND CONFIG             the propagator without and with --spool-dir, single
#                                          events and batches: rROUND-spool-SHAPE-MODE.err
# The .facts and .cpu files are what bench/src/inputs.rs reads.
#
# The caller makes its directories with bench_make_dirs (tmp: consumers run in it, so no .env
# of the repository is read; raw; logs) and sets seconds (per measurement) and bin (the
# release binaries of the bench crate); load_pid is the running load generator, for cleanup.

# Makes the run's temporary directories: tmp (raw under it, for the raw outputs) and logs (in
# memory when it can, so pgbench's per-transaction logs add no disk writes next to the WAL's
# fsyncs). NAME tells the runs apart in /tmp.
bench_make_dirs() { # NAME
    tmp=$(mktemp -d "/tmp/events-$1.XXXXXX")
    chmod 755 "$tmp"
    raw=$tmp/raw
    mkdir -p "$raw"
    logs=$(mktemp -d "/dev/shm/events-$1.XXXXXX" 2>/dev/null || mktemp -d "$tmp/logs.XXXXXX")
    load_pid=
}

# The end of a run, also on Ctrl-C (the caller's `cleanup`, armed by bench_traps before anything
# starts): stops the load generator, the processes PID... and the cluster, keeps the raw outputs
# in KEEP (a folder of the repository git ignores) and removes the temporary directories.
bench_cleanup() { # KEEP PID...
    local keep=$1
    shift
    [[ -n ${load_pid:-} ]] && kill "$load_pid" 2>/dev/null
    stop_processes "$@"
    bench_stop_cluster
    rm -rf "$keep" && mkdir -p "$keep" && cp -r "$raw"/. "$keep/" 2>/dev/null
    rm -rf "$tmp" "$logs"
}
bench_traps() {
    trap cleanup EXIT
    trap 'say "interrupted"; exit 130' INT
    trap 'say "terminated"; exit 143' TERM
}

# Installs wrk from Debian when missing and root; checks openssl, curl and PostgreSQL's client
# tools; puts the server's bindir first on PATH.
bench_need_tools() {
    local program
    if ! command -v wrk >/dev/null; then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            say "wrk is missing; installing it from Debian (apt-get install wrk)"
            if ! { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }; then
                die "could not install wrk with apt-get; install it by hand (apt-get install wrk)"
            fi
        else
            die "wrk is missing: install it (Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk)"
        fi
    fi
    for program in openssl curl; do
        command -v "$program" >/dev/null || die "$program is missing: install it (Debian/Ubuntu: apt-get install $program); the HTTPS measurements need it"
    done
    need_pg_cluster
    pg_bin=$(pg_cluster bindir) || die "no PostgreSQL server binaries (the reason is above)"
    for program in pgbench psql; do
        [[ -x $pg_bin/$program ]] || die "$pg_bin has no $program: install the PostgreSQL client tools (Debian: apt-get install postgresql-client) or set PG_BINDIR"
    done
    export PATH=$pg_bin:$PATH
}

# Starts the cluster in DIR with initdb's defaults, so fsync, synchronous_commit and
# full_page_writes are on (never turned off here), applies the schema and checks the
# durability; sets pg_port, pg_dir and durability, and points psql and pgbench at it.
bench_start_cluster() { # DIR
    pg_dir=$1
    say "starting PostgreSQL (default durability)"
    start_cluster "$pg_dir" --fsync on
    pg_port=$cluster_port
    say "PostgreSQL on 127.0.0.1:$pg_port"
    export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres PGDATABASE=events
    (cd "$tmp" && DB_HOST=127.0.0.1 DB_PORT=$pg_port DB_USER=postgres DB_PASSWORD="" DB_NAME=events \
        "$repo/db_init_script.sh" >/dev/null) || die "db_init_script.sh failed"
    durability="fsync=$(sql 'SHOW fsync'), synchronous_commit=$(sql 'SHOW synchronous_commit')"
    [[ $durability == "fsync=on, synchronous_commit=on" ]] || die "the cluster does not run with default durability: $durability"
}

bench_stop_cluster() {
    [[ -n ${pg_dir:-} ]] && pg_cluster stop --dir "$pg_dir" --mode immediate >/dev/null 2>&1
}

sql() { psql -X -q -tA -v ON_ERROR_STOP=1 -c "$1"; }
count_rows() { sql "SELECT count(*) FROM events"; }

# A checkpoint before each measurement: none inherits another's dirty pages and WAL, so a
# checkpoint's I/O does not land in one of them by chance.
quiet() { sql "CHECKPOINT"; sleep 1; }

# A consumer's configuration: FILE PORT [lines added to the consumer section, e.g. TLS].
# BENCH_WORKERS sets consumer.workers for a tuning run.
write_config() {
    cat >"$1" <<EOF
database:
  host: 127.0.0.1
  port: $pg_port
  user: postgres
  password: ""
  dbname: events
consumer:
  host: 127.0.0.1
  port: $2
${BENCH_WORKERS:+  workers: $BENCH_WORKERS}
${3:-}
propagator:
  endpoint: http://127.0.0.1:$2/event
  events_file: $repo/events.json
EOF
}

# Microseconds since the epoch, from bash's clock (no process).
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/[.,]/})); }

# Starts a consumer and waits until GET /readyz answers 200 (over HTTPS when CA is given):
# BIN CONFIG LOG PORT CA|"" [VAR=value...] (its environment; LOG_LEVEL=warn unless given).
# Sets started_pid and ready_us (start to ready).
start_consumer() {
    local program=$1 config=$2 log=$3 port=$4 ca=$5 start
    shift 5
    start=$(now_us)
    (cd "$tmp" && exec env LOG_LEVEL=warn "$@" "$program" --config "$config") >"$log" 2>&1 &
    started_pid=$!
    while true; do
        if [[ -n $ca ]]; then
            [[ $(https_status 127.0.0.1 "$port" /readyz "$ca") == 200 ]] && break
            sleep 0.05
        else
            # /dev/tcp polling costs no process per try, so the time to ready is exact.
            [[ $(http_status 127.0.0.1 "$port" /readyz) == 200 ]] && break
        fi
        kill -0 "$started_pid" 2>/dev/null || { cat "$log" >&2; die "the consumer $program ($config) exited"; }
        (($(now_us) - start < 20000000)) || die "the consumer $program ($config) was not ready within 20 s"
    done
    # shellcheck disable=SC2034 # used by the scripts that source this file
    ready_us=$(($(now_us) - start))
}

# Stops processes: TERM, up to 5 s to finish, then KILL. Empty or gone PIDs are skipped.
stop_processes() { # PID...
    local pid
    for pid in "$@"; do
        if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then continue; fi
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

# The value of one line of a consumer's /metrics, 0 when absent: BASE_URL NAME [CA]. Plain
# HTTP goes over bash's /dev/tcp (no process), HTTPS through curl with the CA.
metric() {
    local url=$1 name=$2 ca=${3:-} port
    if [[ $url == https://* ]]; then
        curl -sf --max-time 5 --cacert "$ca" "$url/metrics" >"$tmp/metrics" ||
            die "cannot reach $url/metrics"
        awk -v k="$name" '$1 == k { v = $2 } END { print v + 0 }' "$tmp/metrics"
        return
    fi
    port=${url##*:}
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || die "cannot reach $url/metrics"
    printf 'GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3
    awk -v k="$name" '$1 == k { v = $2 } END { print v + 0 }' <&3
    exec 3<&-
}

# CPU time in clock ticks (utime + stime) of one process, and of this cluster: its postmaster,
# the live processes it started (backends, background workers; no other cluster's, though
# several may run as the same user) and what its ended children used, which the postmaster
# has collected (cutime + cstime). Without the latter the sum would drop whenever a backend (a
# psql of this script, an autovacuum worker) ends during a measurement.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # PID
pg_cpu_ticks() {
    local pid postmaster total
    postmaster=$(head -n 1 "$pg_dir/data/postmaster.pid")
    total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster/stat")
    for pid in $(pgrep -P "$postmaster"); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; } # PID KEY

# A consumer's peak RSS during one run: the kernel's high-water mark (VmHWM), reset before
# the run by writing 5 to clear_refs (as root; otherwise it is the peak since start, and
# peak_since says so). Nothing samples during the run, so the measurement costs nothing.
peak_since=run
reset_peak_rss() { # PID
    if [[ $peak_since == run ]] && ! { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null; then
        peak_since=start
    fi
}

# measure_pgbench OUT SCRIPT CLIENTS: pgbench with bench/SCRIPT, prepared, for `seconds`.
measure_pgbench() {
    local out=$1 script=$2 clients=$3 threads
    threads=$((clients < $(nproc) ? clients : $(nproc)))
    say "pgbench $script: $clients clients, $threads threads, ${seconds}s"
    pgbench -n -M prepared -f "$repo/bench/$script" -c "$clients" -j "$threads" -T "$seconds" \
        -l --log-prefix="$logs/pgbench" events >"$out.out" 2>&1 || { cat "$out.out" >&2; die "pgbench failed"; }
    "$bin/bench_report" latency "$logs"/pgbench.* >"$out.latency" || die "bench_report latency failed"
    rm -f "$logs"/pgbench.*
    say "  $(grep '^tps = ' "$out.out" | cut -d' ' -f3) tps; $(cat "$out.latency")"
}

# measure_wrk OUT CONNS URL [PID [CA]]: wrk with bench/post_event.lua against URL; for a
# consumer (PID) also the rows it added, its own count of stored events, its peak RSS and the
# CPU of it and of PostgreSQL.
measure_wrk() {
    local out=$1 conns=$2 url=$3 pid=${4:-} ca=${5:-} threads rows_before stored_before
    local cpu_before pg_before
    threads=$((conns < 2 ? 1 : 2))
    say "wrk $(basename "$out"): $conns connections, $threads threads, ${seconds}s"
    if [[ -n $pid ]]; then
        rows_before=$(count_rows)
        stored_before=$(metric "$url" event_consumer_events_stored_total "$ca")
        reset_peak_rss "$pid"
        cpu_before=$(cpu_ticks "$pid") pg_before=$(pg_cpu_ticks)
    fi
    # -d is a safety net: the script stops each thread once its events are answered.
    wrk -t "$threads" -c "$conns" -d "$((seconds + 2))s" --timeout 5s --latency \
        -s "$repo/bench/post_event.lua" "$url" -- "$seconds" "$(basename "$out")-$RANDOM" \
        >"$out.out" 2>&1 &
    load_pid=$!
    wait "$load_pid" || { cat "$out.out" >&2; die "wrk failed"; }
    load_pid=
    grep '^BENCH ' "$out.out" >&2 || { cat "$out.out" >&2; die "wrk printed no BENCH line"; }
    if [[ -n $pid ]]; then
        printf 'consumer_cpu_ticks=%s\npg_cpu_ticks=%s\n' "$(($(cpu_ticks "$pid") - cpu_before))" \
            "$(($(pg_cpu_ticks) - pg_before))" >"$out.cpu"
        printf 'peak_rss_kb=%s\nrows_added=%s\nstored_delta=%s\n' "$(rss_kb "$pid" VmHWM)" \
            "$(($(count_rows) - rows_before))" \
            "$(($(metric "$url" event_consumer_events_stored_total "$ca") - stored_before))" >"$out.facts"
    fi
}

# measure_batch OUT PORT PID CONNS [ARG...]: bench's batch_load, batches of 100 to POST /events
# on the plain consumer at PORT (further arguments to batch_load, e.g. --gzip), with the rows
# it added, its own count of stored events, its peak RSS, the WAL written and the CPU.
measure_batch() {
    local out=$1 port=$2 pid=$3 conns=$4 url rows_before stored_before lsn_before cpu_before pg_before
    shift 4
    url=http://127.0.0.1:$port
    say "batch_load $(basename "$out"): $conns connections, batches of 100 $*, ${seconds}s"
    rows_before=$(count_rows)
    stored_before=$(metric "$url" event_consumer_events_stored_total)
    lsn_before=$(sql "SELECT pg_current_wal_lsn()")
    reset_peak_rss "$pid"
    cpu_before=$(cpu_ticks "$pid") pg_before=$(pg_cpu_ticks)
    "$bin/batch_load" --port "$port" --connections "$conns" --seconds "$seconds" \
        --run "$(basename "$out")-$RANDOM" "$@" >"$out.out" 2>&1 ||
        { cat "$out.out" >&2; die "batch_load failed"; }
    grep '^BATCH ' "$out.out" >&2 || { cat "$out.out" >&2; die "batch_load printed no BATCH line"; }
    printf 'consumer_cpu_ticks=%s\npg_cpu_ticks=%s\n' "$(($(cpu_ticks "$pid") - cpu_before))" \
        "$(($(pg_cpu_ticks) - pg_before))" >"$out.cpu"
    printf 'peak_rss_kb=%s\nrows_added=%s\nstored_delta=%s\nwal_bytes=%s\n' \
        "$(rss_kb "$pid" VmHWM)" "$(($(count_rows) - rows_before))" \
        "$(($(metric "$url" event_consumer_events_stored_total) - stored_before))" \
        "$(sql "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn_before')::bigint")" >"$out.facts"
}

# The propagator as a load generator without and with its spool (--spool-dir on the disk of
# the run's temporary directory, fsync on), single events at --max-in-flight 8 and batches of
# 100, each pair back to back and its order alternating by round so drift favours neither:
# rROUND-spool-SHAPE-MODE.err (its stderr; bench/src/spool.rs reads the summary and the spool's
# fsync line). Needs bin (event_propagator), tmp and raw.
measure_spool() { # ROUND CONFIG
    local round=$1 config=$2 shape mode modes args
    modes=(off on)
    ((round % 2 == 0)) && modes=(on off)
    for shape in single batch; do
        case $shape in
        single) args=(--period 0 --max-in-flight 8 --count 20000) ;;
        batch) args=(--period 0 --batch-size 100 --max-in-flight 8 --count 1000) ;;
        esac
        for mode in "${modes[@]}"; do
            local spool_args=()
            if [[ $mode == on ]]; then
                rm -rf "$tmp/spool"
                spool_args=(--spool-dir "$tmp/spool")
            fi
            (cd "$tmp" && exec env LOG_LEVEL=info "$bin/event_propagator" --config "$config" \
                "${args[@]}" "${spool_args[@]}" >/dev/null 2>"$raw/r$round-spool-$shape-$mode.err") &
            load_pid=$!
            wait "$load_pid" || say "the propagator ($shape, spool $mode) exited with status $?"
            load_pid=
        done
    done
}
