//! bench/RESULTS.md: the tables and the targets, from the rounds, the pacer and the run's facts.

use std::fmt::Write as _;

use crate::batches::{self, BatchRound, LoadGenerator};
use crate::inputs::{Fields, InputError, Pacer};
use crate::rounds::{Round, CONNECT_CONNS, PAIRS, ROUND_TRIPS_ALLOWED};
use crate::stats::{median_index, Latency};

/// Everything the report is made of.
#[derive(Debug)]
pub struct Report {
    pub meta: Fields,
    pub rounds: Vec<Round>,
    /// The batch measurements, one per round.
    pub batches: Vec<BatchRound>,
    /// The propagator as a load generator, when it ran.
    pub load: Option<LoadGenerator>,
    /// Where the raw outputs are (for the CPU figures, read where they are shown).
    pub dir: std::path::PathBuf,
    pub pacer: Option<Pacer>,
    /// The propagator without and with its spool, one per round (none in older runs).
    pub spool: Vec<crate::spool::Round>,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn lat(l: &Latency) -> String {
    format!("{:.2} / {:.2} / {:.1}", l.p50_ms, l.p99_ms, l.max_ms)
}

/// The value of the median round and that round's index.
fn median_by(rounds: &[Round], value: impl Fn(&Round) -> f64) -> (f64, usize) {
    let values: Vec<f64> = rounds.iter().map(value).collect();
    let i = median_index(&values).unwrap_or(0);
    (values[i], i)
}

impl Report {
    pub fn render(&self) -> Result<String, InputError> {
        let m = &self.meta;
        let n = self.rounds.len();
        // Per pair, the round whose ratio is the median fills the table.
        let median_round: Vec<usize> = (0..PAIRS.len())
            .map(|i| median_by(&self.rounds, |r| r.ratio(i)).1)
            .collect();
        let shown = |i: usize| &self.rounds[median_round[i]];
        // Peak RSS is the highest of all rounds, not the median round's.
        let peak_rss_64 = self
            .rounds
            .iter()
            .map(|r| r.consumer[2].peak_rss_kb)
            .max()
            .unwrap_or(0);
        let rows_all = self
            .rounds
            .iter()
            .all(|r| r.consumer.iter().chain(&r.tls).all(|c| c.rows_match()));
        // HTTPS: per pair the round whose HTTPS ÷ plain ratio is the median; the new-connection
        // runs by the median TLS rate.
        let tls_round: Vec<usize> = (0..PAIRS.len())
            .map(|i| median_by(&self.rounds, |r| r.tls_ratio(i)).1)
            .collect();
        let tls_shown = |i: usize| &self.rounds[tls_round[i]];
        let tls_peak_rss_64 = self
            .rounds
            .iter()
            .map(|r| r.tls[2].peak_rss_kb)
            .max()
            .unwrap_or(0);
        let (_, connect) = median_by(&self.rounds, |r| r.connect_tls.rate());
        // The latency targets take the median of the rounds' p99: a disk stall in one round
        // shows in the list, not in the verdict.
        let (p99_1, _) = median_by(&self.rounds, |r| r.consumer[0].wrk.latency.p99_ms);
        let (p99_64, _) = median_by(&self.rounds, |r| r.consumer[2].wrk.latency.p99_ms);
        let (_, one) = median_by(&self.rounds, Round::one_conn_excess_ms);
        let one = &self.rounds[one];
        let (_, stmt) = median_by(&self.rounds, Round::statement_cost);
        let stmt = &self.rounds[stmt];
        let idle_rss_kb: u64 = m.number("idle_rss_kb")?;

        let mut o = String::new();
        let target = m
            .text("consumer_bin")
            .ok()
            .filter(|b| !b.is_empty())
            .map_or_else(
                || {
                    format!(
                        "commit {}{}",
                        m.text("commit").unwrap_or("?"),
                        m.text("dirty").unwrap_or("")
                    )
                },
                |bin| {
                    format!(
                        "consumer binary {bin} (BENCH_CONSUMER_BIN), scripts at commit {}",
                        m.text("commit").unwrap_or("?")
                    )
                },
            );
        writeln!(
            o,
            "# Benchmark: consumer vs PostgreSQL's single-row INSERT ceiling\n"
        )
        .ok();
        writeln!(
            o,
            "{}, {target}; `make bench` (scripts/bench.sh), {} s per measurement.",
            m.text("date")?,
            m.text("seconds")?
        )
        .ok();
        writeln!(
            o,
            "Machine: {} cores ({}), {} RAM, PostgreSQL {} ({}), Linux {}, {}.",
            m.text("cores")?,
            m.text("cpu")?,
            m.text("ram")?,
            m.text("pg_version")?,
            m.text("durability")?,
            m.text("kernel")?,
            m.text("wrk_version")?
        )
        .ok();
        writeln!(
            o,
            "Load average (1/5/15 min) before: {}, after: {}.",
            m.text("load_start")?,
            m.text("load_end")?
        )
        .ok();
        writeln!(o, "**Numbers are from one run on a shared, noisy 2-core machine** where wrk/pgbench, the consumer and PostgreSQL compete for the same cores; compare the ratios, which pair figures taken seconds apart. The pairs ran in {n} round(s); for each pair the table shows the round whose ratio is the median (every round's ratio is listed below it), peak RSS is the highest of all rounds, and rows == 2xx is checked in every round.").ok();

        writeln!(o, "\n## Throughput and latency\n").ok();
        writeln!(o, "| load | concurrency | rows/s | latency p50 / p99 / max (ms) | peak RSS | rows == 2xx |").ok();
        writeln!(o, "|---|---:|---:|---|---:|---|").ok();
        for (i, (clients, conns)) in PAIRS.into_iter().enumerate() {
            let r = shown(i);
            let (pg, c) = (&r.insert[i], &r.consumer[i]);
            let plural =
                |k: u32, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
            let rss = if conns == 64 {
                peak_rss_64
            } else {
                c.peak_rss_kb
            };
            writeln!(
                o,
                "| pgbench, 1 INSERT per transaction | {} | {:.0} | {} | | failed txns: {} |",
                plural(clients, "client", "clients"),
                pg.tps,
                lat(&pg.latency),
                pg.failed
            )
            .ok();
            writeln!(
                o,
                "| consumer, wrk POST /event | {} | {:.0} | {} | {} MB | {} ({} rows, {} 2xx) |",
                plural(conns, "conn", "conns"),
                c.rate(),
                lat(&c.wrk.latency),
                mb(rss),
                if c.rows_match() { "yes" } else { "NO" },
                c.rows_added,
                c.wrk.ok_2xx
            )
            .ok();
        }

        writeln!(o, "\nRatio consumer ÷ pgbench and the consumer's p99 latency in each round (the median-ratio round, shown above, is marked \\*):\n").ok();
        let header: String = (1..=n).map(|r| format!("round {r} | ")).collect();
        writeln!(o, "| pair | {header}").ok();
        writeln!(o, "|---|{}", "---:|".repeat(n)).ok();
        for (i, (clients, conns)) in PAIRS.into_iter().enumerate() {
            write!(o, "| {conns} conn(s) ÷ {clients} client(s) | ").ok();
            for (k, r) in self.rounds.iter().enumerate() {
                let star = if k == median_round[i] { "\\*" } else { "" };
                write!(
                    o,
                    "{:.2}{star}, p99 {:.2} ms | ",
                    r.ratio(i),
                    r.consumer[i].wrk.latency.p99_ms
                )
                .ok();
            }
            writeln!(o).ok();
        }

        writeln!(o, "\n## HTTPS\n").ok();
        writeln!(o, "A second consumer on the same database serves HTTPS (`consumer.tls_cert_file`, `tls_key_file`: a certificate for localhost and 127.0.0.1 from a throwaway CA, {}); an OpenSSL client negotiates {}. Right after each consumer run above, in the same round, wrk sends the same events over HTTPS with as many connections; wrk's own TLS work shares the 2 cores with the consumer and PostgreSQL. For each connection count the table shows the round whose HTTPS ÷ plain ratio is the median; peak RSS is the highest of all rounds at 64 connections.\n", m.text("tls_certificates").unwrap_or("?"), m.text("tls_negotiated").unwrap_or("?")).ok();
        writeln!(o, "| connections | plain events/s | HTTPS events/s | HTTPS ÷ plain | HTTPS latency p50 / p99 / max (ms) | HTTPS peak RSS | rows == 2xx |").ok();
        writeln!(o, "|---:|---:|---:|---:|---|---:|---|").ok();
        for (i, (_, conns)) in PAIRS.into_iter().enumerate() {
            let r = tls_shown(i);
            let (plain, tls) = (&r.consumer[i], &r.tls[i]);
            let rss = if conns == 64 {
                tls_peak_rss_64
            } else {
                tls.peak_rss_kb
            };
            writeln!(
                o,
                "| {conns} | {:.0} | {:.0} | {:.2} | {} | {} MB | {} ({} rows, {} 2xx) |",
                plain.rate(),
                tls.rate(),
                r.tls_ratio(i),
                lat(&tls.wrk.latency),
                mb(rss),
                if tls.rows_match() { "yes" } else { "NO" },
                tls.rows_added,
                tls.wrk.ok_2xx
            )
            .ok();
        }
        writeln!(o, "\nHTTPS ÷ plain and the HTTPS p99 latency in each round (the median round, shown above, is marked \\*):\n").ok();
        writeln!(o, "| connections | {header}").ok();
        writeln!(o, "|---|{}", "---:|".repeat(n)).ok();
        for (i, (_, conns)) in PAIRS.into_iter().enumerate() {
            write!(o, "| {conns} | ").ok();
            for (k, r) in self.rounds.iter().enumerate() {
                let star = if k == tls_round[i] { "\\*" } else { "" };
                write!(
                    o,
                    "{:.2}{star}, p99 {:.2} ms | ",
                    r.tls_ratio(i),
                    r.tls[i].wrk.latency.p99_ms
                )
                .ok();
            }
            writeln!(o).ok();
        }
        writeln!(o, "\nNew connections at {CONNECT_CONNS} at once (bench's `connect_rate`: {CONNECT_CONNS} threads, each connects, sends `GET /healthz` with `Connection: close` and reads the answer to the close, then starts again; over TLS a full handshake each time, rustls with session resumption off, the certificate verified), and the same over plain TCP to the plain consumer as the reference (what a connection costs without TLS: the accept and its thread). Latency is from connect to close.\n").ok();
        writeln!(o, "| round | new TLS connections/s | TLS latency p50 / p99 / max (ms) | new plain connections/s | plain latency p50 / p99 / max (ms) | TLS ÷ plain | errors (TLS, plain) |").ok();
        writeln!(o, "|---:|---:|---|---:|---|---:|---|").ok();
        for (k, r) in self.rounds.iter().enumerate() {
            let star = if k == connect { "\\*" } else { "" };
            let (t, p) = (&r.connect_tls, &r.connect_plain);
            writeln!(
                o,
                "| {}{star} | {:.0} | {} | {:.0} | {} | {:.2} | {}, {} |",
                k + 1,
                t.rate(),
                lat(&t.latency),
                p.rate(),
                lat(&p.latency),
                r.handshake_ratio(),
                t.errors,
                p.errors
            )
            .ok();
        }
        writeln!(o, "\n\\* the round with the median TLS rate: {:.0} new TLS connections (full handshakes) a second at {CONNECT_CONNS} connections.", self.rounds[connect].connect_tls.rate()).ok();

        writeln!(o, "\n## One connection: where the request path shows\n").ok();
        writeln!(o, "The consumer's median latency at 1 connection next to pgbench's at 1 client (one INSERT per commit), and the round trip of a do-nothing blocking HTTP/1.1 server (`null_http`: a thread per connection, TCP_NODELAY, keep-alive, a fixed 201) under the same wrk and bench/post_event.lua in the same round. The bound is pgbench p50 + {ROUND_TRIPS_ALLOWED} × round-trip p50. The statement columns run pgbench at 1 client with the array form the consumer uses for batches of two or more (bench/consumer_statement.sql) and with the keyed `INSERT … ON CONFLICT … RETURNING` it uses for one event (bench/keyed_insert.sql).\n").ok();
        writeln!(o, "| round | consumer p50 (ms) | pgbench p50 (ms) | round trip p50 (ms), req/s | bound (ms) | consumer − bound (ms) | array form: tps, p50 (ms) | keyed INSERT: tps, p50 (ms) | array form's cost per commit |").ok();
        writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|").ok();
        for (k, r) in self.rounds.iter().enumerate() {
            let star = if std::ptr::eq(r, one) { "\\*" } else { "" };
            writeln!(o, "| {}{star} | {:.2} | {:.2} | {:.3}, {:.0} | {:.2} | {:+.2} | {:.0}, {:.2} | {:.0}, {:.2} | {:+.0} % |", k + 1, r.consumer[0].wrk.latency.p50_ms, r.insert[0].latency.p50_ms, r.null.latency.p50_ms, r.null.rate(), r.one_conn_bound_ms(), r.one_conn_excess_ms(), r.statement.tps, r.statement.latency.p50_ms, r.keyed.tps, r.keyed.latency.p50_ms, r.statement_cost() * 100.0).ok();
        }
        writeln!(o, "\n\\* the round with the median excess, used by the target below. The array form's cost per commit over the keyed INSERT, median of the rounds: {:+.0} % (keyed {:.0} tps vs array form {:.0} tps in that round).", stmt.statement_cost() * 100.0, stmt.keyed.tps, stmt.statement.tps).ok();

        batches::render(&self.batches, &mut o);
        batches::render_load(self.load.as_ref(), &mut o);
        crate::spool::render(&self.spool, &mut o);
        let clk_tck = m.number::<f64>("clk_tck").unwrap_or(100.0);
        batches::render_cpu(
            &self.dir,
            batches::median_ceiling_round(&self.batches) + 1,
            clk_tck,
            &mut o,
        );

        let r64 = shown(2).ratio(2);
        let r8 = shown(1).ratio(1);
        let r1 = shown(0).ratio(0);
        let pacer = match &self.pacer {
            Some(p) => {
                let with_free = p.skipped.saturating_sub(p.skipped_window_full);
                let check = p.rows_added == p.delivered;
                let ok = (990.0..=1010.0).contains(&p.rate)
                    && p.lateness_p99_ms <= 2.0
                    && with_free == 0
                    && check;
                (format!("{:.2}/s, lateness p99 {} ms, {} skipped slots ({with_free} with senders free, {} while all {} sends in flight awaited the consumer), rows == delivered: {} ({})", p.rate, p.lateness_p99_ms, p.skipped, p.skipped_window_full, p.in_flight_used, if check { "yes" } else { "NO" }, p.rows_added), ok)
            }
            None => (m.text("pacer").unwrap_or("not run").to_owned(), false),
        };
        writeln!(o, "\n## Targets\n").ok();
        writeln!(o, "| target | measured | |\n|---|---|---|").ok();
        let (s64, s8, s1) = (shown(2), shown(1), shown(0));
        writeln!(
            o,
            "| 64 conns ≥ 1.5 × pgbench 32 clients | {r64:.2} × ({:.0} / {:.0}) | {} |",
            s64.consumer[2].rate(),
            s64.insert[2].tps,
            verdict(r64 >= 1.5)
        )
        .ok();
        writeln!(
            o,
            "| 64 conns p99 ≤ 25 ms (median of the rounds) | {p99_64:.2} ms | {} |",
            verdict(p99_64 <= 25.0)
        )
        .ok();
        writeln!(
            o,
            "| 8 conns ≥ 0.8 × pgbench 8 clients | {r8:.2} × ({:.0} / {:.0}) | {} |",
            s8.consumer[1].rate(),
            s8.insert[1].tps,
            verdict(r8 >= 0.8)
        )
        .ok();
        writeln!(
            o,
            "| 1 conn ≥ 0.7 × pgbench 1 client | {r1:.2} × ({:.0} / {:.0}) | {} |",
            s1.consumer[0].rate(),
            s1.insert[0].tps,
            verdict(r1 >= 0.7)
        )
        .ok();
        writeln!(
            o,
            "| 1 conn p99 ≤ 2 ms (median of the rounds) | {p99_1:.2} ms | {} |",
            verdict(p99_1 <= 2.0)
        )
        .ok();
        writeln!(o, "| 1 conn p50 ≤ pgbench 1-client p50 + {ROUND_TRIPS_ALLOWED} × round-trip p50 (median of the rounds) | {:.2} ms vs {:.2} + {ROUND_TRIPS_ALLOWED} × {:.3} = {:.2} ms | {} |", one.consumer[0].wrk.latency.p50_ms, one.insert[0].latency.p50_ms, one.null.latency.p50_ms, one.one_conn_bound_ms(), verdict(one.one_conn_excess_ms() <= 0.0)).ok();
        for (i, (_, conns)) in PAIRS.into_iter().enumerate() {
            let r = tls_shown(i);
            let ratio = r.tls_ratio(i);
            writeln!(
                o,
                "| HTTPS ≥ 0.7 × plain at {conns} conn{} | {ratio:.2} × ({:.0} / {:.0}) | {} |",
                if conns == 1 { "" } else { "s" },
                r.tls[i].rate(),
                r.consumer[i].rate(),
                verdict(ratio >= 0.7)
            )
            .ok();
        }
        writeln!(
            o,
            "| peak RSS under 64 HTTPS connections ≤ 16 MB | {} MB | {} |",
            mb(tls_peak_rss_64),
            verdict(tls_peak_rss_64 as f64 / 1024.0 <= 16.0)
        )
        .ok();
        let rss_mb = peak_rss_64 as f64 / 1024.0;
        writeln!(
            o,
            "| peak RSS under 64-connection load ≤ 10 MB | {} MB | {} |",
            mb(peak_rss_64),
            verdict(rss_mb <= 10.0)
        )
        .ok();
        writeln!(
            o,
            "| idle RSS ≤ 4 MB | {} MB | {} |",
            mb(idle_rss_kb),
            verdict(idle_rss_kb as f64 / 1024.0 <= 4.0)
        )
        .ok();
        writeln!(o, "| propagator at 1 kHz: rate within 1 %, lateness p99 ≤ 2 ms, no skipped slots while the consumer keeps up (skips while every sender awaited the consumer are counted apart) | {} | {} |", pacer.0, verdict(pacer.1)).ok();
        writeln!(
            o,
            "| rows == 2xx answers in every run, plain and HTTPS | {} | {} |",
            if rows_all { "yes" } else { "NO" },
            verdict(rows_all)
        )
        .ok();

        for (target, measured, ok) in batches::targets(&self.batches) {
            writeln!(o, "| {target} | {measured} | {} |", verdict(ok)).ok();
        }

        let size = |key: &str| -> String {
            match m.number::<u64>(key) {
                Ok(bytes) => format!("{} MB ({bytes} bytes)", mb(bytes / 1024)),
                Err(_) => "-".into(),
            }
        };
        writeln!(o, "\n## Start and size\n\n| | |\n|---|---|").ok();
        writeln!(
            o,
            "| consumer start to `GET /readyz` 200 | {} ms |",
            m.text("ready_ms")?
        )
        .ok();
        writeln!(o, "| idle RSS (1 s after ready) | {} MB |", mb(idle_rss_kb)).ok();
        if let (Ok(rows), Ok(table), Ok(indexes)) = (
            m.number::<u64>("disk_rows"),
            m.number::<u64>("disk_table_bytes"),
            m.number::<u64>("disk_index_bytes"),
        ) {
            let per_million = |bytes: u64| bytes as f64 / rows.max(1) as f64 * 1e6 / 1048576.0;
            writeln!(o, "| disk per million events (`events` after the run, {rows} rows, vacuumed) | {:.0} MB: table {:.0} MB, indexes {:.0} MB |", per_million(table + indexes), per_million(table), per_million(indexes)).ok();
        }
        writeln!(
            o,
            "| event_consumer, stripped | {} |",
            size("size_consumer")
        )
        .ok();
        writeln!(
            o,
            "| event_propagator, stripped | {} |",
            size("size_propagator")
        )
        .ok();

        let reset = if m.text("peak_since")? == "run" {
            ""
        } else {
            "; the reset failed, so: since start"
        };
        let workers = m.text("workers").unwrap_or("");
        let workers = if workers.is_empty() {
            String::new()
        } else {
            format!(" except workers: {workers}")
        };
        writeln!(o, "\nHow it is measured: consumer rows/s is rows added to `events` divided by the time wrk sent
events (bench/post_event.lua stops sending 2 s before wrk's deadline, so every event sent has
been answered when rows are counted); pgbench rows/s is its tps (one row per transaction,
`-M prepared`), its latencies come from its per-transaction log (bench_report: nearest rank).
Peak RSS is VmRSS of the consumer during each wrk run (VmHWM, reset before the run{reset}).
Consumer configuration: config.yaml defaults{workers}, database and port pointed at the bench cluster,
LOG_LEVEL=warn.").ok();
        Ok(o)
    }
}
