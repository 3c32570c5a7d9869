//! The retention section of `make bench` (scripts/bench-retention.sh): the consumer's
//! throughput with pruning active (a backlog of expired rows being deleted during the whole
//! run) next to the same load without retention, in interleaved rounds of the same run, and
//! the latency of `POST /event` during the first prune of that backlog (its stall).
//!
//! Raw outputs in the directory, per round R and point NAME (`wrk-8`, `wrk-64`, `batch-8`):
//! - `rR-wrk-retention-off-N.out` / `rR-wrk-retention-on-N.out` (post_event.lua's `BENCH`
//!   line), or `rR-batch-retention-off-8.out` / `…-on-8.out` (batch_load's `BATCH` line);
//!   beside each its `.cpu` (consumer and PostgreSQL CPU) and `.facts`, of which only
//!   `stored_delta=` (the consumer's own count) is read: the row counts go negative while
//!   pruning takes rows away;
//! - `rR-retention-on-NAME.pruned`: `backlog=` rows expired before the run, `pruned_during=`
//!   of them deleted while the load ran, `left=` still there when it ended;
//! - `meta.env`: `rounds=`, `backlog=`, `retention_days=`, `seconds=`, `clk_tck=` and the
//!   machine.

use std::fmt::Write as _;
use std::path::Path;

use crate::inputs::{per_second, Cpu, Fields, InputError, Wrk};
use crate::rounds::ratio;
use crate::stats::{median, Latency};

/// Throughput with pruning active must stay at least this share of the same load without.
pub const TARGET_RATIO: f64 = 0.8;

/// One load on one consumer in one round.
#[derive(Debug, Clone)]
pub struct Side {
    /// Events stored a second.
    pub rate: f64,
    pub latency: Latency,
    /// Every request answered 2xx, none lost.
    pub all_2xx: bool,
    /// CPU per stored event in microseconds: the consumer's and PostgreSQL's (the prune's
    /// deletes and vacuum included on the side with retention).
    pub consumer_us: f64,
    pub pg_us: f64,
}

impl Side {
    /// `rR-KIND-retention-SIDE-CONNS` with KIND `wrk` or `batch`.
    fn read(
        dir: &Path,
        round: usize,
        kind: &str,
        side: &str,
        conns: &str,
        clk_tck: f64,
    ) -> Result<Side, InputError> {
        let base = format!("r{round}-{kind}-retention-{side}-{conns}");
        let (rate, latency, all_2xx) = if kind == "wrk" {
            let w = Wrk::read(dir, round, &format!("retention-{side}-{conns}"))?;
            let ok = w.not_2xx == 0 && w.socket_errors == 0 && w.sent == w.answered;
            (w.rate(), w.latency, ok)
        } else {
            let b = Batch::read(&dir.join(format!("{base}.out")))?;
            (b.rate, b.latency, b.all_2xx)
        };
        let cpu = Cpu::read(&dir.join(format!("{base}.cpu")))?;
        let stored: u64 =
            Fields::lines(&dir.join(format!("{base}.facts")))?.number("stored_delta")?;
        let us = |ticks: u64| ticks as f64 / clk_tck * 1e6 / stored.max(1) as f64;
        Ok(Side {
            rate,
            latency,
            all_2xx,
            consumer_us: us(cpu.consumer_ticks),
            pg_us: us(cpu.pg_ticks),
        })
    }
}

/// What the consumer with retention pruned in one round.
#[derive(Debug, Clone, Copy)]
pub struct Pruned {
    pub backlog: u64,
    pub during: u64,
    pub left: u64,
}

/// One round of one load: without, with, and what was pruned.
#[derive(Debug, Clone)]
pub struct Round {
    pub off: Side,
    pub on: Side,
    pub pruned: Pruned,
}

impl Round {
    /// With ÷ without, 0 without a baseline.
    pub fn ratio(&self) -> f64 {
        ratio(self.on.rate, self.off.rate)
    }
}

/// One load, measured without and with retention in every round.
#[derive(Debug, Clone)]
pub struct Point {
    pub name: String,
    pub what: String,
    pub rounds: Vec<Round>,
}

impl Point {
    fn read(dir: &Path, name: &str, rounds: usize, clk_tck: f64) -> Result<Point, InputError> {
        let (kind, conns) = match name.split_once('-') {
            Some((kind @ ("wrk" | "batch"), conns)) => (kind, conns),
            _ => {
                return Err(InputError {
                    file: dir.to_owned(),
                    what: format!("point {name} is not wrk-CONNECTIONS or batch-CONNECTIONS"),
                })
            }
        };
        let what = if kind == "wrk" {
            format!("POST /event, {conns} connections (wrk)")
        } else {
            format!("POST /events, batches of 100, {conns} connections")
        };
        let rounds = (1..=rounds)
            .map(|r| {
                let f = Fields::lines(&dir.join(format!("r{r}-retention-on-{name}.pruned")))?;
                Ok(Round {
                    off: Side::read(dir, r, kind, "off", conns, clk_tck)?,
                    on: Side::read(dir, r, kind, "on", conns, clk_tck)?,
                    pruned: Pruned {
                        backlog: f.number("backlog")?,
                        during: f.number("pruned_during")?,
                        left: f.number("left")?,
                    },
                })
            })
            .collect::<Result<_, InputError>>()?;
        Ok(Point {
            name: name.to_owned(),
            what,
            rounds,
        })
    }

    /// The median over the rounds of one figure.
    pub fn median(&self, value: impl Fn(&Round) -> f64) -> f64 {
        median(&self.values(value))
    }

    /// The largest value over the rounds of one figure.
    pub fn worst(&self, value: impl Fn(&Round) -> f64) -> f64 {
        self.values(value).into_iter().fold(0.0, f64::max)
    }

    fn values(&self, value: impl Fn(&Round) -> f64) -> Vec<f64> {
        self.rounds.iter().map(value).collect()
    }

    /// The median of the per-round ratios: each round's pair ran back to back.
    pub fn median_ratio(&self) -> f64 {
        self.median(Round::ratio)
    }

    pub fn all_2xx(&self) -> bool {
        self.rounds.iter().all(|r| r.off.all_2xx && r.on.all_2xx)
    }
}

/// batch_load's `BATCH` line alone.
struct Batch {
    /// Created events a second.
    rate: f64,
    latency: Latency,
    all_2xx: bool,
}

impl Batch {
    fn read(file: &Path) -> Result<Batch, InputError> {
        let f = Fields::tagged_line(file, "BATCH")?;
        let ms = |key: &str| f.number::<f64>(key).map(|us| us / 1000.0);
        Ok(Batch {
            rate: per_second(f.number("created")?, f.number("window_s")?),
            latency: Latency {
                p50_ms: ms("p50_us")?,
                p99_ms: ms("p99_us")?,
                max_ms: ms("max_us")?,
            },
            all_2xx: f.number::<u64>("not_2xx")? == 0 && f.number::<u64>("errors")? == 0,
        })
    }
}

/// The points of one round, in the order measured.
pub const POINTS: [&str; 3] = ["wrk-8", "wrk-64", "batch-8"];

/// Reads every round of every point of `dir` (`rounds=` and `clk_tck=` from its meta.env).
pub fn read(dir: &Path) -> Result<Vec<Point>, InputError> {
    let meta = Fields::lines(&dir.join("meta.env"))?;
    let rounds: usize = meta.number("rounds")?;
    let clk_tck: f64 = meta.number("clk_tck")?;
    POINTS
        .iter()
        .map(|name| Point::read(dir, name, rounds, clk_tck))
        .collect()
}

/// The markdown section.
pub fn render(dir: &Path, points: &[Point]) -> Result<String, InputError> {
    let meta = Fields::lines(&dir.join("meta.env"))?;
    let rounds: usize = meta.number("rounds")?;
    let mut o = String::new();
    // The heading is linked from RESULTS.md and the notes: keep it.
    let _ = writeln!(o, "## Retention: throughput while a backlog is pruned\n");
    let _ = writeln!(
        o,
        "{}, commit {}; scripts/bench-retention.sh (run by `make bench`), {} s per measurement, \
         {rounds} rounds interleaved: odd rounds measure each load without then with retention, \
         even rounds with then without, a CHECKPOINT and 1 s pause before each. Load average \
         before: {}, after: {}. **A shared, noisy 2-core machine**: medians are the lower middle \
         round, and with ÷ without is the median of the rounds' own ratios (each round's pair \
         ran back to back).\n",
        meta.text("date")?,
        meta.text("commit")?,
        meta.text("seconds")?,
        meta.text("load_start")?,
        meta.text("load_end")?,
    );
    let _ = writeln!(
        o,
        "Without: a consumer without retention, kept for the whole run. With: {} rows received \
         two days ago inserted and vacuumed, and a second consumer with `retention_days: {}` \
         started, which begins its first prune at once (chunks of 5000, oldest first, at most \
         10,000 rows a second), measured under the same load as soon as it is ready; then \
         stopped, the rest of the backlog deleted and vacuumed. Its latency is the stall the \
         first prune costs `POST /event`. Target: with ≥ {TARGET_RATIO} × without at each point. \
         CPU per stored event: utime + stime of the consumer + of the cluster's PostgreSQL \
         processes (the prune's included on the side with retention) ÷ events stored.\n",
        meta.text("backlog")?,
        meta.text("retention_days")?,
    );
    let _ = writeln!(o, "| load | without: events/s | with: events/s | with ÷ without, each round | median ratio | CPU µs/event without: consumer + PostgreSQL | with | all 2xx |");
    let _ = writeln!(o, "|---|---:|---:|---|---:|---:|---:|---|");
    for p in points {
        let cpu = |side: fn(&Round) -> &Side| {
            format!(
                "{:.0} + {:.0}",
                p.median(|r| side(r).consumer_us),
                p.median(|r| side(r).pg_us)
            )
        };
        let ratio = p.median_ratio();
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {} | {:.2} {} | {} | {} | {} |",
            p.what,
            p.median(|r| r.off.rate),
            p.median(|r| r.on.rate),
            list(&p.rounds, |r| format!("{:.2}", r.ratio())),
            ratio,
            if ratio >= TARGET_RATIO {
                "(met)"
            } else {
                "(**missed**)"
            },
            cpu(|r| &r.off),
            cpu(|r| &r.on),
            if p.all_2xx() { "yes" } else { "**no**" },
        );
    }
    let _ = writeln!(
        o,
        "\nThe first prune's stall: latency of the load on the consumer with retention (p99 and \
         max, median and worst of the rounds) next to the same without, and the backlog rows \
         pruned during each round's run (of {} expired).\n",
        meta.text("backlog")?,
    );
    let _ = writeln!(o, "| load | p50 / p99 / max without, median (ms) | with: p99 median / worst (ms) | with: max median / worst (ms) | pruned during the run, each round |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    for p in points {
        let _ = writeln!(
            o,
            "| {} | {:.2} / {:.2} / {:.1} | {:.2} / {:.2} | {:.1} / {:.1} | {} |",
            p.what,
            p.median(|r| r.off.latency.p50_ms),
            p.median(|r| r.off.latency.p99_ms),
            p.median(|r| r.off.latency.max_ms),
            p.median(|r| r.on.latency.p99_ms),
            p.worst(|r| r.on.latency.p99_ms),
            p.median(|r| r.on.latency.max_ms),
            p.worst(|r| r.on.latency.max_ms),
            list(&p.rounds, |r| format!(
                "{} ({} left)",
                r.pruned.during, r.pruned.left
            )),
        );
    }
    Ok(o)
}

/// Every round's figure, in round order.
fn list(rounds: &[Round], figure: impl Fn(&Round) -> String) -> String {
    rounds.iter().map(figure).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    /// `.facts` and `.cpu` beside `base`.out: `stored` events, `ticks` of the consumer, twice
    /// as many of PostgreSQL.
    fn facts(dir: &Path, base: &str, stored: u64, ticks: u64) {
        write(
            dir,
            &format!("{base}.facts"),
            &format!("peak_rss_kb=1\nrows_added=-5\nstored_delta={stored}\n"),
        );
        write(
            dir,
            &format!("{base}.cpu"),
            &format!("consumer_cpu_ticks={ticks}\npg_cpu_ticks={}\n", 2 * ticks),
        );
    }

    /// A wrk run over 2 s: `answered` events, p99 and max in ms.
    fn wrk(dir: &Path, round: usize, side: &str, answered: u64, p99_ms: u64, max_ms: u64) {
        let base = format!("r{round}-wrk-retention-{side}-8");
        write(
            dir,
            &format!("{base}.out"),
            &format!("BENCH sent={answered} answered={answered} ok_2xx={answered} not_2xx=0 socket_errors=0 window_s=2.0 p50_us=1000 p99_us={}000 max_us={}000\n", p99_ms, max_ms),
        );
        facts(dir, &base, answered, answered / 100);
    }

    /// A batch_load run over 2 s: `created` events, one not 2xx when `failed`.
    fn batch(dir: &Path, round: usize, side: &str, conns: u32, created: u64, failed: bool) {
        let base = format!("r{round}-batch-retention-{side}-{conns}");
        write(
            dir,
            &format!("{base}.out"),
            &format!("batch_load: starting\nBATCH connections={conns} batch=100 gzip=no requests=1 created={created} not_2xx={} errors=0 window_s=2.0 body_bytes=1 wire_bytes=1 p50_us=2000 p99_us=4000 max_us=8000\n", u8::from(failed)),
        );
        facts(dir, &base, created, 10);
    }

    #[test]
    fn each_point_gives_side_medians_the_ratio_of_each_round_cpu_per_event_and_the_stall() {
        let dir = std::env::temp_dir().join(format!("bench-retention-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir,
            "meta.env",
            "date=2026-12-07 04:00 UTC\ncommit=abc\nseconds=2\nrounds=3\nbacklog=50000\nclk_tck=100\nretention_days=1\nload_start=1\nload_end=2\n",
        );
        // wrk-8 without: 2000, 2400, 1600 events/s; with: 1800, 1800, 1200: ratios 0.90,
        // 0.75, 0.75, median 0.75 (missed); medians 2000 and 1800 events/s.
        for (round, off, on, p99, max) in [
            (1, 4000, 3600, 30, 90),
            (2, 4800, 3600, 50, 70),
            (3, 3200, 2400, 40, 200),
        ] {
            wrk(&dir, round, "off", off, 10, 20);
            wrk(&dir, round, "on", on, p99, max);
        }
        for round in 1..=3 {
            write(
                &dir,
                &format!("r{round}-retention-on-wrk-8.pruned"),
                &format!(
                    "backlog=50000\npruned_during={}\nleft={}\n",
                    10_000 * round,
                    50_000 - 10_000 * round
                ),
            );
        }
        let points = Point::read(&dir, "wrk-8", 3, 100.0);
        let missing = Point::read(&dir, "wrk-8", 4, 100.0);
        let render_text = points
            .as_ref()
            .ok()
            .map(|p| render(&dir, std::slice::from_ref(p)));
        std::fs::remove_dir_all(&dir).unwrap();
        let point = points.unwrap();
        let ratios: Vec<String> = point
            .rounds
            .iter()
            .map(|r| format!("{:.2}", r.ratio()))
            .collect();
        assert_eq!(ratios, ["0.90", "0.75", "0.75"]);
        assert!((point.median_ratio() - 0.75).abs() < 1e-9);
        // A hundredth of the events in ticks of 100 a second: 100 µs an event; PostgreSQL 200.
        assert!((point.rounds[0].on.consumer_us - 100.0).abs() < 1e-9);
        assert!((point.rounds[0].on.pg_us - 200.0).abs() < 1e-9);
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("r4-retention-on-wrk-8.pruned"));
        let report = render_text.unwrap().unwrap();
        assert!(
            report.starts_with("## Retention: throughput while a backlog is pruned\n"),
            "{report}"
        );
        assert!(report.contains("3 rounds interleaved"), "{report}");
        assert!(
            report.contains("| POST /event, 8 connections (wrk) | 2000 | 1800 | 0.90, 0.75, 0.75 | 0.75 (**missed**) | 100 + 200 | 100 + 200 | yes |"),
            "{report}"
        );
        // p99 of the rounds 30, 50, 40: median 40, worst 50; max 90, 70, 200: 90 and 200.
        assert!(
            report.contains("| POST /event, 8 connections (wrk) | 1.00 / 10.00 / 20.0 | 40.00 / 50.00 | 90.0 / 200.0 | 10000 (40000 left), 20000 (30000 left), 30000 (20000 left) |"),
            "{report}"
        );
    }

    #[test]
    fn a_batch_point_reads_created_events_and_a_failed_request_shows() {
        let dir =
            std::env::temp_dir().join(format!("bench-retention-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        batch(&dir, 1, "off", 8, 100_000, false);
        batch(&dir, 1, "on", 8, 90_000, true);
        write(
            &dir,
            "r1-retention-on-batch-8.pruned",
            "backlog=9\npruned_during=4\nleft=5\n",
        );
        let point = Point::read(&dir, "batch-8", 1, 100.0);
        let bad_name = Point::read(&dir, "copy-8", 1, 100.0);
        std::fs::remove_dir_all(&dir).unwrap();
        let point = point.unwrap();
        assert_eq!(point.what, "POST /events, batches of 100, 8 connections");
        assert_eq!(point.rounds[0].off.rate, 50_000.0);
        assert!((point.median_ratio() - 0.9).abs() < 1e-9);
        assert_eq!(point.rounds[0].on.latency.max_ms, 8.0);
        assert!(!point.all_2xx());
        assert_eq!(point.rounds[0].pruned.left, 5);
        assert!(bad_name.unwrap_err().to_string().contains("copy-8"));
    }

    #[test]
    fn a_round_without_a_baseline_has_a_ratio_of_zero() {
        let side = |rate| Side {
            rate,
            latency: Latency {
                p50_ms: 1.0,
                p99_ms: 2.0,
                max_ms: 3.0,
            },
            all_2xx: true,
            consumer_us: 0.0,
            pg_us: 0.0,
        };
        let pruned = Pruned {
            backlog: 1,
            during: 0,
            left: 1,
        };
        let round = Round {
            off: side(0.0),
            on: side(850.0),
            pruned,
        };
        assert_eq!(round.ratio(), 0.0);
        let round = Round {
            off: side(1000.0),
            ..round
        };
        assert!((round.ratio() - 0.85).abs() < 1e-9);
    }
}
