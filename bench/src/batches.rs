//! Batches: `POST /events` with 100 events a request against PostgreSQL's own write paths for
//! the same rows, COPY first (the ceiling), measured in the same round.

use std::fmt::Write as _;
use std::path::Path;

use crate::inputs::{per_second, Cpu, Fields, InputError};
use crate::stats::{median_index, Latency};

/// Events per request and rows per transaction in every batch measurement.
pub const BATCH: u64 = 100;
/// Connections of the consumer's batch runs.
pub const CONSUMER_CONNS: [u32; 3] = [1, 8, 64];
/// Connections of the COPY ceiling and the other write paths, and of the gzip run: the
/// connection count the target compares at.
pub const CEILING_CONNS: u32 = 8;
/// The write paths measured beside COPY, in the order of the table.
pub const PATHS: [&str; 3] = ["unnest", "values", "staging"];

/// write_paths' `WRITE` line: rows written straight into PostgreSQL.
#[derive(Debug, Clone)]
pub struct Write {
    pub rows: u64,
    pub errors: u64,
    pub window_s: f64,
    /// One batch's transaction.
    pub latency: Latency,
}

impl Write {
    fn read(dir: &Path, round: usize, name: &str) -> Result<Write, InputError> {
        let f = Fields::tagged_line(&dir.join(format!("r{round}-write-{name}.out")), "WRITE")?;
        Ok(Write {
            rows: f.number("rows")?,
            errors: f.number("errors")?,
            window_s: f.number("window_s")?,
            latency: latency(&f)?,
        })
    }

    pub fn rate(&self) -> f64 {
        per_second(self.rows, self.window_s)
    }
}

/// batch_load's `BATCH` line and what the table and the consumer said around it.
#[derive(Debug, Clone)]
pub struct BatchRun {
    pub requests: u64,
    pub created: u64,
    pub not_2xx: u64,
    pub errors: u64,
    pub window_s: f64,
    pub body_bytes: u64,
    pub wire_bytes: u64,
    /// One request, first byte sent to last byte of the answer.
    pub latency: Latency,
    pub rows_added: u64,
    pub stored_delta: u64,
    pub peak_rss_kb: u64,
    /// WAL PostgreSQL wrote during the run.
    pub wal_bytes: u64,
}

impl BatchRun {
    /// The run `rR-batch-NAME`, e.g. `plain-8` (make bench) or `a-8` (make bench-compare).
    pub fn read(dir: &Path, round: usize, name: &str) -> Result<BatchRun, InputError> {
        let f = Fields::tagged_line(&dir.join(format!("r{round}-batch-{name}.out")), "BATCH")?;
        let facts = Fields::lines(&dir.join(format!("r{round}-batch-{name}.facts")))?;
        Ok(BatchRun {
            requests: f.number("requests")?,
            created: f.number("created")?,
            not_2xx: f.number("not_2xx")?,
            errors: f.number("errors")?,
            window_s: f.number("window_s")?,
            body_bytes: f.number("body_bytes")?,
            wire_bytes: f.number("wire_bytes")?,
            latency: latency(&f)?,
            rows_added: facts.number("rows_added")?,
            stored_delta: facts.number("stored_delta")?,
            peak_rss_kb: facts.number("peak_rss_kb")?,
            wal_bytes: facts.number("wal_bytes")?,
        })
    }

    /// Stored events a second: rows added over the time batches were sent.
    pub fn rate(&self) -> f64 {
        per_second(self.rows_added, self.window_s)
    }

    /// Every request answered 2xx, and each event it reported created is one row, as the
    /// consumer's own counter says.
    pub fn rows_match(&self) -> bool {
        self.not_2xx == 0
            && self.errors == 0
            && self.created == self.requests * BATCH
            && self.rows_added == self.created
            && self.stored_delta == self.created
    }
}

fn latency(f: &Fields) -> Result<Latency, InputError> {
    let ms = |key: &str| f.number::<f64>(key).map(|us| us / 1000.0);
    Ok(Latency {
        p50_ms: ms("p50_us")?,
        p99_ms: ms("p99_us")?,
        max_ms: ms("max_us")?,
    })
}

/// The batch measurements of one round.
#[derive(Debug, Clone)]
pub struct BatchRound {
    /// Binary COPY straight into `events` at [`CEILING_CONNS`]: the ceiling.
    pub copy: Write,
    /// [`PATHS`] at [`CEILING_CONNS`].
    pub paths: Vec<Write>,
    /// The consumer at each of [`CONSUMER_CONNS`].
    pub consumer: Vec<BatchRun>,
    /// The consumer with gzipped bodies at [`CEILING_CONNS`].
    pub gzip: BatchRun,
}

impl BatchRound {
    pub fn read(dir: &Path, round: usize) -> Result<BatchRound, InputError> {
        Ok(BatchRound {
            copy: Write::read(dir, round, &format!("copy-{CEILING_CONNS}"))?,
            paths: PATHS
                .iter()
                .map(|p| Write::read(dir, round, &format!("{p}-{CEILING_CONNS}")))
                .collect::<Result<_, _>>()?,
            consumer: CONSUMER_CONNS
                .iter()
                .map(|c| BatchRun::read(dir, round, &format!("plain-{c}")))
                .collect::<Result<_, _>>()?,
            gzip: BatchRun::read(dir, round, &format!("gzip-{CEILING_CONNS}"))?,
        })
    }

    /// The consumer's events/s at [`CEILING_CONNS`] ÷ COPY's rows/s in the same round.
    pub fn ceiling_ratio(&self) -> f64 {
        let at = CONSUMER_CONNS
            .iter()
            .position(|&c| c == CEILING_CONNS)
            .expect("CEILING_CONNS is one of CONSUMER_CONNS");
        self.consumer[at].rate() / self.copy.rate().max(f64::MIN_POSITIVE)
    }

    fn runs(&self) -> impl Iterator<Item = &BatchRun> {
        self.consumer.iter().chain(std::iter::once(&self.gzip))
    }
}

fn median_round(rounds: &[BatchRound], value: impl Fn(&BatchRound) -> f64) -> (f64, usize) {
    let values: Vec<f64> = rounds.iter().map(value).collect();
    let i = median_index(&values).unwrap_or(0);
    (values[i], i)
}

/// The index of the round with the median consumer ÷ COPY ratio: the one the section shows.
pub fn median_ceiling_round(rounds: &[BatchRound]) -> usize {
    median_round(rounds, BatchRound::ceiling_ratio).1
}

fn lat(l: &Latency) -> String {
    format!("{:.1} / {:.1} / {:.0}", l.p50_ms, l.p99_ms, l.max_ms)
}

/// The section: the round with the median ceiling ratio in full, every round's ratio listed.
pub fn render(rounds: &[BatchRound], o: &mut String) {
    let (_, shown) = median_round(rounds, BatchRound::ceiling_ratio);
    let r = &rounds[shown];
    writeln!(
        o,
        "\n## Batches: `POST /events` next to PostgreSQL's COPY\n"
    )
    .ok();
    writeln!(o, "Batches of {BATCH} events shaped like events.json, each event with its own idempotency key: the consumer under bench's `batch_load` (each connection posts a JSON array and waits for its answer; with gzip, `Content-Encoding: gzip` at flate2's default level; bodies made before the clock starts), and the same rows written straight into PostgreSQL by bench's `write_paths` at {CEILING_CONNS} connections, one transaction per {BATCH} rows, in the same round. COPY is binary `COPY events FROM STDIN` with no conflict handling and nothing returned: it cannot keep the contract (duplicates, results), so it is the ceiling, not a candidate. The other paths keep it: `unnest` is the consumer's statement (three arrays, `ON CONFLICT DO NOTHING RETURNING`); `values` a prepared 300-parameter multi-row INSERT; `staging` a binary COPY into an unlogged staging table and, in the same transaction, `DELETE … RETURNING` from it into `INSERT … ON CONFLICT DO NOTHING RETURNING`. Round {} of {} is shown (the median consumer ÷ COPY ratio at {CEILING_CONNS} connections).\n", shown + 1, rounds.len()).ok();
    writeln!(
        o,
        "| write path | connections | rows/s | ÷ COPY | transaction p50 / p99 / max (ms) | errors |"
    )
    .ok();
    writeln!(o, "|---|---:|---:|---:|---:|---:|").ok();
    let copy = r.copy.rate();
    let row = |o: &mut String, name: &str, w: &Write| {
        writeln!(
            o,
            "| {name} | {CEILING_CONNS} | {:.0} | {:.2} | {} | {} |",
            w.rate(),
            w.rate() / copy,
            lat(&w.latency),
            w.errors
        )
        .ok();
    };
    row(o, "COPY (ceiling)", &r.copy);
    for (name, w) in PATHS.iter().zip(&r.paths) {
        row(o, name, w);
    }
    writeln!(o, "\n| consumer | events/s | ÷ COPY | request p50 / p99 / max (ms) | JSON / sent bytes per request | WAL bytes per event | peak RSS | rows == created |").ok();
    writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---|").ok();
    let runs = CONSUMER_CONNS
        .iter()
        .map(|c| format!("{c} connection{}", if *c == 1 { "" } else { "s" }))
        .zip(&r.consumer)
        .chain(std::iter::once((
            format!("{CEILING_CONNS} connections, gzip"),
            &r.gzip,
        )));
    for (name, b) in runs {
        writeln!(
            o,
            "| {name} | {:.0} | {:.2} | {} | {} / {} | {:.0} | {:.1} MB | {} |",
            b.rate(),
            b.rate() / copy,
            lat(&b.latency),
            b.body_bytes,
            b.wire_bytes,
            b.wal_bytes as f64 / b.rows_added.max(1) as f64,
            b.peak_rss_kb as f64 / 1024.0,
            if b.rows_match() { "yes" } else { "NO" }
        )
        .ok();
    }
    let list: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.2}", r.ceiling_ratio()))
        .collect();
    writeln!(
        o,
        "\nConsumer ÷ COPY at {CEILING_CONNS} connections, every round: {}. At 64 connections {} events are in flight at once, so by Little's law a request waits at least that many events ÷ the rate: its p99 is shown, not judged.",
        list.join(", "),
        64 * BATCH
    )
    .ok();
}

/// Rows for the targets table: (target, measured, met).
pub fn targets(rounds: &[BatchRound]) -> Vec<(String, String, bool)> {
    let (ratio, shown) = median_round(rounds, BatchRound::ceiling_ratio);
    let r = &rounds[shown];
    let at = CONSUMER_CONNS
        .iter()
        .position(|&c| c == CEILING_CONNS)
        .unwrap_or(0);
    let mut rows = vec![(
        format!("batches of {BATCH} at {CEILING_CONNS} conns ≥ 0.5 × COPY of the same rows"),
        format!(
            "{ratio:.2} × ({:.0} / {:.0})",
            r.consumer[at].rate(),
            r.copy.rate()
        ),
        ratio >= 0.5,
    )];
    for (i, conns) in CONSUMER_CONNS.iter().enumerate().filter(|(_, &c)| c <= 8) {
        let (p99, _) = median_round(rounds, |r| r.consumer[i].latency.p99_ms);
        rows.push((
            format!(
                "batch request p99 ≤ 50 ms at {conns} conn{} (median of the rounds)",
                if *conns == 1 { "" } else { "s" }
            ),
            format!("{p99:.1} ms"),
            p99 <= 50.0,
        ));
    }
    let peak = rounds
        .iter()
        .flat_map(BatchRound::runs)
        .map(|b| b.peak_rss_kb)
        .max()
        .unwrap_or(0);
    rows.push((
        "peak RSS under batches ≤ 24 MB (all runs, gzip included)".into(),
        format!("{:.1} MB", peak as f64 / 1024.0),
        peak as f64 / 1024.0 <= 24.0,
    ));
    let all = rounds
        .iter()
        .flat_map(BatchRound::runs)
        .all(BatchRun::rows_match);
    rows.push((
        "rows == events acknowledged in every batch run".into(),
        if all { "yes" } else { "NO" }.into(),
        all,
    ));
    rows
}

/// What one stored event costs in CPU, consumer and PostgreSQL, for the runs of round
/// `round` (1-based) in `dir`: single events under wrk and batches under batch_load. The
/// figure for "how far one PostgreSQL goes" (ARCHITECTURE.md).
pub fn render_cpu(dir: &Path, round: usize, clk_tck: f64, o: &mut String) {
    let runs = [
        (
            "single events, 8 connections",
            format!("r{round}-wrk-consumer-8"),
        ),
        (
            "single events, 64 connections",
            format!("r{round}-wrk-consumer-64"),
        ),
        (
            "batches of 100, 8 connections",
            format!("r{round}-batch-plain-8"),
        ),
        (
            "batches of 100, 8 connections, gzip",
            format!("r{round}-batch-gzip-8"),
        ),
    ];
    writeln!(o, "\nCPU per stored event in round {round} (utime + stime of the consumer and of the cluster's PostgreSQL processes, those that ended during the run included, ÷ rows added; the load generator's own CPU is not counted): what the two cores can carry once nothing else runs on them.\n").ok();
    writeln!(
        o,
        "| run | consumer µs | PostgreSQL µs | events/s per core (both) |"
    )
    .ok();
    writeln!(o, "|---|---:|---:|---:|").ok();
    for (name, base) in runs {
        let (Some(cpu), Ok(facts)) = (
            Cpu::read(&dir.join(format!("{base}.cpu"))).ok(),
            Fields::lines(&dir.join(format!("{base}.facts"))),
        ) else {
            continue;
        };
        let rows = facts.number::<u64>("rows_added").unwrap_or(0).max(1) as f64;
        let us = |ticks: u64| ticks as f64 / clk_tck * 1e6 / rows;
        let (c, p) = (us(cpu.consumer_ticks), us(cpu.pg_ticks));
        writeln!(
            o,
            "| {name} | {c:.1} | {p:.1} | {:.0} |",
            1e6 / (c + p).max(f64::MIN_POSITIVE)
        )
        .ok();
    }
}

/// The propagator as a load generator (`--period 0 --batch-size 100 --max-in-flight 8`): its
/// summary line and the rows it added.
#[derive(Debug, Clone)]
pub struct LoadGenerator {
    pub throughput: f64,
    pub delivered: u64,
    pub sent: u64,
    pub rows_added: u64,
}

impl LoadGenerator {
    /// None when the propagator did not run (it did not build) or printed no summary.
    pub fn read(dir: &Path) -> Result<Option<LoadGenerator>, InputError> {
        let err = dir.join("propagator-load.err");
        if !err.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&err).map_err(|e| InputError {
            file: err.clone(),
            what: format!("cannot read it: {e}"),
        })?;
        let Some(line) = text
            .lines()
            .rev()
            .find(|l| l.contains(" throughput=") && l.contains("sent="))
        else {
            return Ok(None);
        };
        let f = Fields::from_words(&err, line);
        let throughput = f.text("throughput")?;
        let facts = Fields::lines(&dir.join("propagator-load.facts"))?;
        Ok(Some(LoadGenerator {
            throughput: throughput
                .trim_end_matches("/s")
                .parse()
                .map_err(|_| InputError {
                    file: err.clone(),
                    what: format!("throughput={throughput} is not a rate"),
                })?,
            delivered: f.number("delivered")?,
            sent: f.number("sent")?,
            rows_added: facts.number("rows_added")?,
        }))
    }
}

/// The load generator's line of the section.
pub fn render_load(load: Option<&LoadGenerator>, o: &mut String) {
    let Some(l) = load else {
        writeln!(
            o,
            "
The propagator as a load generator did not run (it did not build, or printed no summary)."
        )
        .ok();
        return;
    };
    writeln!(
        o,
        "
The propagator as a load generator (`--period 0 --batch-size 100 --max-in-flight 8 --count 3000`: 3,000 requests of 100 events, after the rounds): {:.0} events/s delivered (its `throughput=`), {} of {} sent, {} rows added ({}).",
        l.throughput,
        l.delivered,
        l.sent,
        l.rows_added,
        if l.rows_added == l.delivered && l.delivered == l.sent { "all stored once" } else { "MISMATCH" }
    )
    .ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_run_matches_only_when_every_created_event_is_one_row() {
        let dir = std::env::temp_dir().join(format!("bench-batches-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("r1-batch-plain-8.out"),
            "BATCH connections=8 batch=100 gzip=no requests=30 created=3000 not_2xx=0 errors=0 \
             window_s=2.000 body_bytes=14000 wire_bytes=14100 p50_us=5000 p99_us=12000 max_us=20000\n",
        )
        .unwrap();
        let facts = |rows: u64| {
            format!("peak_rss_kb=9000\nrows_added={rows}\nstored_delta=3000\nwal_bytes=900000\n")
        };
        std::fs::write(dir.join("r1-batch-plain-8.facts"), facts(3000)).unwrap();
        let good = BatchRun::read(&dir, 1, "plain-8");
        std::fs::write(dir.join("r1-batch-plain-8.facts"), facts(2999)).unwrap();
        let short = BatchRun::read(&dir, 1, "plain-8");
        let missing = Write::read(&dir, 1, "copy-8");
        std::fs::remove_dir_all(&dir).unwrap();
        let good = good.unwrap();
        assert!(good.rows_match());
        assert_eq!(good.rate(), 1500.0);
        assert_eq!(good.latency.p99_ms, 12.0);
        assert!(!short.unwrap().rows_match(), "a row short is a mismatch");
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("r1-write-copy-8.out"));
    }
}
