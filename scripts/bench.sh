#!/usr/bin/env bash
# make bench: throughput of the consumer next to PostgreSQL's own ceiling, in one run.
#
# Builds the release binaries, starts a throwaway PostgreSQL cluster with DEFAULT durability
# (fsync and synchronous_commit on: never turned off here), applies schema.sql, then measures
# in pairs close in time, so each ratio compares figures taken under the same machine noise:
#   pgbench, one single-row INSERT per transaction into `events`, at 1, 8 and 32 clients, and
#   the consumer under wrk (bench/post_event.lua) at 1, 8 and 64 keep-alive connections:
#   stored events/s, latency p50/p99/max, peak RSS, and rows added == 2xx answers;
# then the propagator as a 1 kHz pacer, the time from start to ready, idle RSS and binary
# sizes. Prints one table and writes it to bench/RESULTS.md (BENCH_RESULTS moves it).
#
# Settings (environment): BENCH_SECONDS per measurement (default 10), BENCH_ROUNDS of the
# pgbench/wrk pairs (default 3; the median ratio of the rounds is reported), PG_BINDIR (initdb,
# pg_ctl, pgbench, psql), CARGO_TARGET_DIR (where cargo builds; default target/), BENCH_WORKERS
# (consumer.workers for a tuning run; default: the configuration's default).
# Everything it starts is stopped and its temporary directory removed on exit, also on Ctrl-C.
# Loopback only. About 4 minutes after the build.
set -euo pipefail

me=bench.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
results=${BENCH_RESULTS:-$repo/bench/RESULTS.md}

say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { say "$*"; exit 1; }

[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS '$seconds' is not a whole number of seconds"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS '$rounds' is not a positive whole number"
[[ -z ${BENCH_WORKERS:-} || $BENCH_WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS '$BENCH_WORKERS' is not a positive number"

# ---------------------------------------------------------------------------------------------
# Tools.

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

has_server() { [[ -x $1/initdb && -x $1/pg_ctl && -x $1/pgbench && -x $1/psql ]]; }
if [[ -n ${PG_BINDIR:-} ]]; then
    pg_bin=$PG_BINDIR
elif command -v pg_config >/dev/null && has_server "$(pg_config --bindir)"; then
    pg_bin=$(pg_config --bindir)
else
    pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
has_server "$pg_bin" \
    || die "PostgreSQL server binaries (initdb, pg_ctl, pgbench, psql) not found: install them (Debian: apt-get install postgresql) or set PG_BINDIR"
export PATH=$pg_bin:$PATH

# PostgreSQL refuses to run as root: run its binaries as `postgres` then.
as_pg=()
if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user to run the server as"
    as_pg=(runuser -u postgres --)
fi

# ---------------------------------------------------------------------------------------------
# Build.

say "building release binaries (cargo build --release)"
(cd "$repo" && cargo build --release -q -p event_consumer) || die "cargo build of event_consumer failed"
bin=${CARGO_TARGET_DIR:-$repo/target}/release
[[ $bin == /* ]] || bin=$repo/$bin
propagator_built=yes
(cd "$repo" && cargo build --release -q -p event_propagator) || {
    propagator_built=no
    say "event_propagator does not build right now; its pacer row will say so"
}

# ---------------------------------------------------------------------------------------------
# Cleanup, armed before anything is started.

tmp=$(mktemp -d /tmp/events-bench.XXXXXX)
chmod 755 "$tmp"
# pgbench's per-transaction log goes to memory when it can, so it adds no disk writes next to
# the WAL's fsyncs.
logs=$(mktemp -d /dev/shm/events-bench.XXXXXX 2>/dev/null || mktemp -d "$tmp/logs.XXXXXX")
consumer_pid=
load_pid=
pg_started=no

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null
    if [[ -n $consumer_pid ]] && kill -0 "$consumer_pid" 2>/dev/null; then
        kill -TERM "$consumer_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$consumer_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$consumer_pid" 2>/dev/null
    fi
    if [[ $pg_started == yes ]]; then
        "${as_pg[@]}" pg_ctl -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    # The raw outputs, for a closer look (bench/out/ is not committed).
    mkdir -p "$repo/bench/out" && cp "$tmp"/*.out "$tmp"/*.log "$tmp"/*.err "$repo/bench/out/" 2>/dev/null
    rm -rf "$tmp" "$logs"
    exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# A TCP port no socket uses, below the kernel's range for outgoing connections (so no client
# socket can take it between this check and the bind), read without extra tools.
free_port() {
    local low=32768 port hex
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((low > 11000)) || low=32768
    while :; do
        port=$((10000 + RANDOM % (low - 10000)))
        printf -v hex ':%04X ' "$port"
        # Column 2 of /proc/net/tcp* is the local address:port of every socket, in any state.
        awk -v p="$hex" 'index($2 " ", p) { found = 1 } END { exit !found }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null || break
    done
    echo "$port"
}

# ---------------------------------------------------------------------------------------------
# The cluster: initdb defaults, so fsync, synchronous_commit and full_page_writes are on.

[[ ${#as_pg[@]} -gt 0 ]] && chown postgres: "$tmp"
pg_port=$(free_port)
say "starting PostgreSQL on 127.0.0.1:$pg_port (default durability)"
"${as_pg[@]}" initdb -D "$tmp/data" -U postgres -A trust -E UTF8 --no-locale >"$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
cat >>"$tmp/data/postgresql.conf" <<EOF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
max_connections = 200
log_min_messages = warning
EOF
pg_started=yes
"${as_pg[@]}" pg_ctl -D "$tmp/data" -l "$tmp/postgres.log" -w -t 60 start >/dev/null \
    || { cat "$tmp/postgres.log" >&2; die "PostgreSQL did not start"; }

export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres PGDATABASE=events
(cd "$tmp" && DB_HOST=127.0.0.1 DB_PORT=$pg_port DB_USER=postgres DB_PASSWORD="" DB_NAME=events \
    "$repo/db_init_script.sh" >/dev/null) || die "db_init_script.sh failed"
sql() { psql -X -q -tA -v ON_ERROR_STOP=1 -c "$1"; }
count_rows() { sql "SELECT count(*) FROM events"; }
durability="fsync=$(sql 'SHOW fsync'), synchronous_commit=$(sql 'SHOW synchronous_commit')"
[[ $durability == "fsync=on, synchronous_commit=on" ]] || die "the cluster does not run with default durability: $durability"
pg_version=$(sql 'SHOW server_version')

# pgbench's transaction: the same table, a similar row, a random key in the unique index like
# the consumer's (wrk sends random Idempotency-Keys).
cat >"$tmp/insert.sql" <<'EOF'
INSERT INTO events (event_type, event_payload, idempotency_key) VALUES ('sensor.temperature', '{"sensor": "greenhouse-2", "celsius": 23.7}', gen_random_uuid()::text);
EOF

# ---------------------------------------------------------------------------------------------
# The consumer.

consumer_port=$(free_port)
cat >"$tmp/config.yaml" <<EOF
database:
  host: 127.0.0.1
  port: $pg_port
  user: postgres
  password: ""
  dbname: events
consumer:
  host: 127.0.0.1
  port: $consumer_port
${BENCH_WORKERS:+  workers: $BENCH_WORKERS}
propagator:
  endpoint: http://127.0.0.1:$consumer_port/event
  events_file: $repo/events.json
EOF
base=http://127.0.0.1:$consumer_port

# GET over bash's /dev/tcp (no curl needed; polling /readyz costs no process per try).
# http_status prints the status code or 000; http_body prints the whole answer.
http_open() {
    { exec 3<>"/dev/tcp/127.0.0.1/$consumer_port"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' "$1" >&3
}
http_status() {
    local line=000
    if http_open "$1"; then
        IFS=' ' read -r -t 2 _ line _ <&3 || line=000
        exec 3<&-
    fi
    echo "$line"
}
metric() { # value of one line of /metrics, 0 when absent
    http_open /metrics || die "cannot reach the consumer's /metrics"
    awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' <&3
    exec 3<&-
}
rss_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$consumer_pid/status"; }

say "starting the consumer on $base"
start=$EPOCHREALTIME
# The temporary directory as working directory: no .env of the repository is read.
(cd "$tmp" && exec env LOG_LEVEL=warn "$bin/event_consumer" --config "$tmp/config.yaml") \
    >"$tmp/consumer.log" 2>&1 &
consumer_pid=$!
until [[ $(http_status /readyz) == 200 ]]; do
    kill -0 "$consumer_pid" 2>/dev/null || { cat "$tmp/consumer.log" >&2; die "the consumer exited"; }
    [[ $(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { print (n - s > 20) }') == 1 ]] \
        && die "the consumer was not ready within 20 s"
done
ready_ms=$(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (n - s) * 1000 }')
sleep 1
idle_rss_kb=$(rss_kb VmRSS)
say "ready after $ready_ms ms; idle RSS $idle_rss_kb kB"

# ---------------------------------------------------------------------------------------------
# Measurements.

declare -A pg_rate pg_lat pg_fail
declare -A c_rate c_p50 c_p99 c_max c_rss c_rows c_ok c_check

run_pgbench() {
    local clients=$1 threads=$(( $1 < $(nproc) ? $1 : $(nproc) )) out
    say "pgbench: $clients clients, $threads threads, ${seconds}s"
    out=$(pgbench -n -M prepared -f "$tmp/insert.sql" -c "$clients" -j "$threads" -T "$seconds" \
        -l --log-prefix="$logs/pgbench-$clients" events 2>&1) || { echo "$out" >&2; die "pgbench failed"; }
    echo "$out" >"$tmp/pgbench-$clients.out"
    pg_rate[$clients]=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
    pg_fail[$clients]=$(awk '/number of failed transactions: / { print $5 }' <<<"$out")
    # Column 3 of pgbench's transaction log is each transaction's latency in microseconds.
    pg_lat[$clients]=$(cat "$logs/pgbench-$clients".* | awk '{ print $3 }' | sort -n | awk '
        { v[NR] = $1 }
        END { printf "%.2f / %.2f / %.1f", v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000, v[NR] / 1000 }')
    rm -f "$logs/pgbench-$clients".*
    say "  ${pg_rate[$clients]} rows/s, latency p50 / p99 / max ${pg_lat[$clients]} ms"
}

# The consumer's peak RSS during one run: the kernel's high-water mark (VmHWM), reset before
# the run by writing 5 to clear_refs (as root; otherwise it is the peak since start). Nothing
# samples during the run, so the measurement costs the consumer nothing.
reset_peak_rss() {
    if [[ $peak_since == run ]] && ! { echo 5 >"/proc/$consumer_pid/clear_refs"; } 2>/dev/null; then
        peak_since=start
    fi
}
peak_since=run

run_wrk() {
    local conns=$1 threads=$(( $1 < 2 ? 1 : 2 )) before after stored_before stored_after out line
    say "wrk: $conns connections, $threads threads, ${seconds}s"
    before=$(count_rows)
    stored_before=$(metric event_consumer_events_stored_total)
    reset_peak_rss
    # -d is a safety net: the script stops each thread once its events are answered.
    wrk -t "$threads" -c "$conns" -d "$((seconds + 2))s" --timeout 5s --latency \
        -s "$repo/bench/post_event.lua" "$base" -- "$seconds" "r$conns-$RANDOM" >"$tmp/wrk-$conns.out" 2>&1 & load_pid=$!
    wait "$load_pid" || { cat "$tmp/wrk-$conns.out" >&2; die "wrk failed"; }
    load_pid=
    c_rss[$conns]=$(rss_kb VmHWM)
    after=$(count_rows)
    stored_after=$(metric event_consumer_events_stored_total)
    line=$(grep '^BENCH ' "$tmp/wrk-$conns.out") || { cat "$tmp/wrk-$conns.out" >&2; die "wrk printed no BENCH line"; }
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    local window ok sent answered
    window=$(field window_s) ok=$(field ok_2xx) sent=$(field sent) answered=$(field answered)
    c_rows[$conns]=$((after - before))
    c_ok[$conns]=$ok
    c_rate[$conns]=$(awk -v n="${c_rows[$conns]}" -v s="$window" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    c_p50[$conns]=$(awk -v u="$(field p50_us)" 'BEGIN { printf "%.2f", u / 1000 }')
    c_p99[$conns]=$(awk -v u="$(field p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')
    c_max[$conns]=$(awk -v u="$(field max_us)" 'BEGIN { printf "%.1f", u / 1000 }')
    # Every event wrk sent was answered (so none is in flight), each 2xx added exactly one row,
    # and the consumer's own counter agrees.
    if [[ $sent == "$answered" && ${c_rows[$conns]} == "$ok" && $((stored_after - stored_before)) == "$ok" \
          && $(field not_2xx) == 0 && $(field socket_errors) == 0 ]]; then
        c_check[$conns]=yes
    else
        c_check[$conns]=NO
        say "  MISMATCH: rows added ${c_rows[$conns]}, consumer stored $((stored_after - stored_before)); $line"
    fi
    say "  ${c_rate[$conns]} events/s, p50 ${c_p50[$conns]} ms, p99 ${c_p99[$conns]} ms, max ${c_max[$conns]} ms, peak RSS ${c_rss[$conns]} kB, rows == 2xx: ${c_check[$conns]} (${c_rows[$conns]} rows)"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Pairs close in time: (pgbench clients, consumer connections), in BENCH_ROUNDS rounds. Each
# round's ratio pairs figures taken seconds apart; the table shows, per pair, the round whose
# ratio is the median, and lists every round's ratio, so one burst of noise from the shared
# machine neither makes nor breaks a target.
pairs=("1 1" "8 8" "32 64")
declare -A round_ratio round_p99 kept
keep_vars=(pg_rate pg_lat pg_fail c_rate c_p50 c_p99 c_max c_rss c_rows c_ok c_check)
rows_all=yes
peak_rss_64=0
for ((round = 1; round <= rounds; round++)); do
    ((rounds == 1)) || say "round $round of $rounds"
    for pair in "${pairs[@]}"; do
        read -r clients conns <<<"$pair"
        # A checkpoint before each measurement: neither side inherits the other's dirty pages
        # and WAL, so a checkpoint's I/O does not land in one of them by chance.
        sql "CHECKPOINT"
        run_pgbench "$clients"
        sleep 1
        sql "CHECKPOINT"
        run_wrk "$conns"
        sleep 1
        round_ratio[$round:$conns]=$(awk -v a="${c_rate[$conns]}" -v b="${pg_rate[$clients]}" \
            'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        round_p99[$round:$conns]=${c_p99[$conns]}
        [[ ${c_check[$conns]} == yes ]] || rows_all=NO
        ((conns != 64 || c_rss[64] <= peak_rss_64)) || peak_rss_64=${c_rss[64]}
        for var in "${keep_vars[@]}"; do
            declare -n values=$var
            key=$([[ $var == pg_* ]] && echo "$clients" || echo "$conns")
            kept[$round:$var:$key]=${values[$key]}
            unset -n values
        done
    done
done
# Per pair, the round with the median ratio (the lower middle for an even count) fills the table.
declare -A median_round
for pair in "${pairs[@]}"; do
    read -r clients conns <<<"$pair"
    median_round[$conns]=$(for ((round = 1; round <= rounds; round++)); do
        echo "${round_ratio[$round:$conns]} $round"
    done | sort -n | awk -v n="$rounds" 'NR == int((n + 1) / 2) { print $2 }')
    for var in "${keep_vars[@]}"; do
        declare -n values=$var
        key=$([[ $var == pg_* ]] && echo "$clients" || echo "$conns")
        values[$key]=${kept[${median_round[$conns]}:$var:$key]}
        unset -n values
    done
done
# Peak RSS is the highest of all rounds, not the median round's.
c_rss[64]=$peak_rss_64
# The latency targets take the median of the rounds' p99: a disk stall in one round shows in
# the list, not in the verdict.
median_p99() {
    for ((round = 1; round <= rounds; round++)); do echo "${round_p99[$round:$1]}"; done \
        | sort -n | awk -v n="$rounds" 'NR == int((n + 1) / 2)'
}
p99_1=$(median_p99 1)
p99_64=$(median_p99 64)

# The propagator as a pacer: 10 000 events at 1 kHz; its last stderr line is the summary.
pacer="not run"
p_rate='' p_late='' p_skipped='' p_full='' p_check=''
if [[ $propagator_built == yes ]]; then
    say "propagator: --period 0.001 --count 10000"
    before=$(count_rows)
    # LOG_LEVEL=info: the summary is an info line (per-event lines are debug).
    (cd "$tmp" && exec env LOG_LEVEL=info "$bin/event_propagator" --config "$tmp/config.yaml" \
        --period 0.001 --count 10000 >"$tmp/propagator.out" 2>"$tmp/propagator.err") & load_pid=$!
    wait "$load_pid" || say "the propagator exited with status $? (see its summary)"
    load_pid=
    after=$(count_rows)
    summary=$(grep -E '(^| )sent=[0-9]+ .*skipped_slots=' "$tmp/propagator.err" | tail -n 1 || true)
    if [[ -n $summary ]]; then
        pfield() { grep -o " $1=[^ ]*" <<<" $summary" | head -n 1 | cut -d= -f2; }
        p_rate=$(pfield rate); p_rate=${p_rate%/s}
        p_late=$(pfield lateness_p99); p_late=${p_late%ms}
        p_skipped=$(pfield skipped_slots)
        # Slots skipped while every sender was waiting for an answer: the consumer did not
        # keep up (a storage stall longer than the window). The others are the pacer's.
        p_full=$(pfield skipped_window_full); p_full=${p_full:-0}
        delivered=$(pfield delivered)
        p_check=$([[ $((after - before)) == "$delivered" ]] && echo yes || echo NO)
        pacer="${p_rate}/s, lateness p99 ${p_late} ms, ${p_skipped} skipped slots ($((p_skipped - p_full)) with senders free, ${p_full} while all $(pfield max_in_flight_used) sends in flight awaited the consumer), rows == delivered: $p_check ($((after - before)))"
        say "  $summary"
    else
        pacer="no summary line on stderr (the propagator is still being finished)"
        say "  $pacer; its stderr ends with: $(tail -n 2 "$tmp/propagator.err" | tr '\n' ' ')"
    fi
else
    pacer="not built (cargo build -p event_propagator failed)"
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# Sizes of stripped copies (the release profile strips already; this makes sure).
stripped_size() {
    [[ -f $1 ]] || { echo "-"; return; }
    if command -v strip >/dev/null && strip -o "$tmp/stripped" "$1" 2>/dev/null; then
        stat -c %s "$tmp/stripped"
    else
        stat -c %s "$1"
    fi
}
size_consumer=$(stripped_size "$bin/event_consumer")
size_propagator=$(stripped_size "$bin/event_propagator")

# ---------------------------------------------------------------------------------------------
# The table.

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "met" : "MISSED" }'; }
kb_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ram=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=
if git -C "$repo" status --porcelain --untracked-files=no -- event_consumer common 2>/dev/null | grep -q .; then
    dirty=" + uncommitted changes to event_consumer/common"
fi

r64=$(ratio "${c_rate[64]}" "${pg_rate[32]}")
r8=$(ratio "${c_rate[8]}" "${pg_rate[8]}")
r1=$(ratio "${c_rate[1]}" "${pg_rate[1]}")
pacer_verdict="MISSED"
if [[ -n $p_rate ]]; then
    pacer_verdict=$(awk -v r="$p_rate" -v l="$p_late" -v s="$((p_skipped - p_full))" -v c="$p_check" \
        'BEGIN { print ((r >= 990 && r <= 1010 && l <= 2 && s == 0 && c == "yes") ? "met" : "MISSED") }')
fi

report=$(cat <<EOF
# Benchmark: consumer vs PostgreSQL's single-row INSERT ceiling

$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit$dirty; \`make bench\` (scripts/bench.sh), ${seconds} s per measurement.
Machine: $(nproc) cores ($cpu), $ram RAM, PostgreSQL $pg_version ($durability), Linux $(uname -r), $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2).
Load average (1/5/15 min) before: $load_start, after: $load_end.
**Numbers are from one run on a shared, noisy 2-core machine** where wrk/pgbench, the consumer and PostgreSQL compete for the same cores; compare the ratios, which pair figures taken seconds apart. The pairs ran in ${rounds} round(s); for each pair the table shows the round whose ratio is the median (every round's ratio is listed below it), peak RSS is the highest of all rounds, and rows == 2xx is checked in every round.

## Throughput and latency

| load | concurrency | rows/s | latency p50 / p99 / max (ms) | peak RSS | rows == 2xx |
|---|---:|---:|---|---:|---|
| pgbench, 1 INSERT per transaction | 1 client | ${pg_rate[1]} | ${pg_lat[1]} | | failed txns: ${pg_fail[1]} |
| consumer, wrk POST /event | 1 conn | ${c_rate[1]} | ${c_p50[1]} / ${c_p99[1]} / ${c_max[1]} | $(kb_mb "${c_rss[1]}") MB | ${c_check[1]} (${c_rows[1]} rows, ${c_ok[1]} 2xx) |
| pgbench, 1 INSERT per transaction | 8 clients | ${pg_rate[8]} | ${pg_lat[8]} | | failed txns: ${pg_fail[8]} |
| consumer, wrk POST /event | 8 conns | ${c_rate[8]} | ${c_p50[8]} / ${c_p99[8]} / ${c_max[8]} | $(kb_mb "${c_rss[8]}") MB | ${c_check[8]} (${c_rows[8]} rows, ${c_ok[8]} 2xx) |
| pgbench, 1 INSERT per transaction | 32 clients | ${pg_rate[32]} | ${pg_lat[32]} | | failed txns: ${pg_fail[32]} |
| consumer, wrk POST /event | 64 conns | ${c_rate[64]} | ${c_p50[64]} / ${c_p99[64]} / ${c_max[64]} | $(kb_mb "${c_rss[64]}") MB | ${c_check[64]} (${c_rows[64]} rows, ${c_ok[64]} 2xx) |

Ratio consumer ÷ pgbench and the consumer's p99 latency in each round (the median-ratio round, shown above, is marked \*):

| pair | $(for ((round = 1; round <= rounds; round++)); do printf 'round %s | ' "$round"; done)
|---|$(for ((round = 1; round <= rounds; round++)); do printf -- '---:|'; done)
$(for pair in "${pairs[@]}"; do
    read -r clients conns <<<"$pair"
    printf '| %s conn(s) ÷ %s client(s) | ' "$conns" "$clients"
    for ((round = 1; round <= rounds; round++)); do
        printf '%s%s, p99 %s ms | ' "${round_ratio[$round:$conns]}" "$([[ $round == "${median_round[$conns]}" ]] && echo '\*')" "${round_p99[$round:$conns]}"
    done
    echo
done)

## Targets

| target | measured | |
|---|---|---|
| 64 conns ≥ 1.5 × pgbench 32 clients | ${r64} × (${c_rate[64]} / ${pg_rate[32]}) | $(verdict "$r64" ">=" 1.5) |
| 64 conns p99 ≤ 25 ms (median of the rounds) | ${p99_64} ms | $(verdict "$p99_64" "<=" 25) |
| 8 conns ≥ 0.8 × pgbench 8 clients | ${r8} × (${c_rate[8]} / ${pg_rate[8]}) | $(verdict "$r8" ">=" 0.8) |
| 1 conn ≥ 0.7 × pgbench 1 client | ${r1} × (${c_rate[1]} / ${pg_rate[1]}) | $(verdict "$r1" ">=" 0.7) |
| 1 conn p99 ≤ 2 ms (median of the rounds) | ${p99_1} ms | $(verdict "$p99_1" "<=" 2) |
| peak RSS under 64-connection load ≤ 10 MB | $(kb_mb "${c_rss[64]}") MB | $(verdict "$(kb_mb "${c_rss[64]}")" "<=" 10) |
| idle RSS ≤ 4 MB | $(kb_mb "$idle_rss_kb") MB | $(verdict "$(kb_mb "$idle_rss_kb")" "<=" 4) |
| propagator at 1 kHz: rate within 1 %, lateness p99 ≤ 2 ms, no skipped slots while the consumer keeps up (skips while every sender awaited the consumer are counted apart) | $pacer | $pacer_verdict |
| rows == 2xx answers in every run | ${rows_all} | $([[ $rows_all == yes ]] && echo met || echo MISSED) |

## Start and size

| | |
|---|---|
| consumer start to \`GET /readyz\` 200 | ${ready_ms} ms |
| idle RSS (1 s after ready) | $(kb_mb "$idle_rss_kb") MB |
| event_consumer, stripped | $(kb_mb "$((size_consumer / 1024))") MB ($size_consumer bytes) |
| event_propagator, stripped | $([[ $size_propagator == - ]] && echo - || echo "$(kb_mb "$((size_propagator / 1024))") MB ($size_propagator bytes)") |

How it is measured: consumer rows/s is rows added to \`events\` divided by the time wrk sent
events (bench/post_event.lua stops sending 2 s before wrk's deadline, so every event sent has
been answered when rows are counted); pgbench rows/s is its tps (one row per transaction,
\`-M prepared\`), its latencies come from its per-transaction log. Peak RSS is VmRSS of the
consumer during each wrk run (VmHWM, reset before the run$([[ $peak_since == run ]] || echo "; the reset failed, so: since start")).
Consumer configuration: config.yaml defaults${BENCH_WORKERS:+ except workers: $BENCH_WORKERS}, database and port pointed at the bench cluster,
LOG_LEVEL=warn.
EOF
)

echo
echo "$report"
mkdir -p "$(dirname "$results")"
printf '%s\n' "$report" >"$results"
say "written to ${results#"$repo"/}"
