//! The retention section of `make bench` (scripts/bench-retention.sh): the consumer's
//! throughput with pruning active (a backlog of expired rows being deleted during the whole
//! run) next to the same load without retention, in the same run, and the latency of
//! `POST /event` during the first prune of that backlog (its stall).
//!
//! Raw outputs in the directory, per point NAME (`wrk-8`, `wrk-64`, `batch-8`):
//! - `r1-wrk-retention-off-N.out` / `r1-wrk-retention-on-N.out` (post_event.lua's `BENCH`
//!   line), or `r1-batch-retention-off-8.out` / `…-on-8.out` (batch_load's `BATCH` line); the
//!   row counts beside them are not read (pruning takes rows away while the load adds some);
//! - `retention-on-NAME.pruned`: `backlog=` rows expired before the run, `pruned_during=` of
//!   them deleted while the load ran, `left=` still there when it ended;
//! - `meta.env`: `backlog=`, `retention_days=`, `seconds=` and the machine.

use std::fmt::Write as _;
use std::path::Path;

use crate::inputs::{per_second, Fields, InputError, Wrk};
use crate::stats::Latency;

/// Throughput with pruning active must stay at least this share of the same load without.
pub const TARGET_RATIO: f64 = 0.8;

/// One load, measured without and with retention.
#[derive(Debug, Clone)]
pub struct Point {
    pub name: String,
    pub what: String,
    pub off_rate: f64,
    pub on_rate: f64,
    pub off_latency: Latency,
    pub on_latency: Latency,
    pub backlog: u64,
    pub pruned_during: u64,
    pub left: u64,
    /// Every request of both runs answered 2xx.
    pub all_2xx: bool,
}

impl Point {
    pub fn ratio(&self) -> f64 {
        if self.off_rate > 0.0 {
            self.on_rate / self.off_rate
        } else {
            0.0
        }
    }

    fn read(dir: &Path, name: &str) -> Result<Point, InputError> {
        let pruned = Fields::lines(&dir.join(format!("retention-on-{name}.pruned")))?;
        let (kind, conns) = name.split_once('-').ok_or_else(|| InputError {
            file: dir.to_owned(),
            what: format!("point {name} is not KIND-CONNECTIONS"),
        })?;
        let (what, off, on) = match kind {
            "wrk" => {
                let off = Wrk::read(dir, 1, &format!("retention-off-{conns}"))?;
                let on = Wrk::read(dir, 1, &format!("retention-on-{conns}"))?;
                let ok = |w: &Wrk| w.not_2xx == 0 && w.socket_errors == 0 && w.sent == w.answered;
                let all_2xx = ok(&off) && ok(&on);
                (
                    format!("POST /event, {conns} connections (wrk)"),
                    (off.rate(), off.latency, all_2xx),
                    (on.rate(), on.latency),
                )
            }
            _ => {
                let off = Batch::read(dir, &format!("retention-off-{conns}"))?;
                let on = Batch::read(dir, &format!("retention-on-{conns}"))?;
                let all_2xx = off.all_2xx && on.all_2xx;
                (
                    format!("POST /events, batches of 100, {conns} connections"),
                    (off.rate, off.latency, all_2xx),
                    (on.rate, on.latency),
                )
            }
        };
        Ok(Point {
            name: name.to_owned(),
            what,
            off_rate: off.0,
            on_rate: on.0,
            off_latency: off.1,
            on_latency: on.1,
            backlog: pruned.number("backlog")?,
            pruned_during: pruned.number("pruned_during")?,
            left: pruned.number("left")?,
            all_2xx: off.2,
        })
    }
}

/// batch_load's `BATCH` line alone: the row counts around it (`BatchRun`) go negative while
/// a backlog is pruned.
struct Batch {
    /// Created events a second.
    rate: f64,
    latency: Latency,
    all_2xx: bool,
}

impl Batch {
    fn read(dir: &Path, name: &str) -> Result<Batch, InputError> {
        let f = Fields::tagged_line(&dir.join(format!("r1-batch-{name}.out")), "BATCH")?;
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

/// The points of one run, in the order measured.
pub const POINTS: [&str; 3] = ["wrk-8", "wrk-64", "batch-8"];

/// Reads every point of `dir`.
pub fn read(dir: &Path) -> Result<Vec<Point>, InputError> {
    POINTS.iter().map(|name| Point::read(dir, name)).collect()
}

/// The markdown section.
pub fn render(dir: &Path, points: &[Point]) -> Result<String, InputError> {
    let meta = Fields::lines(&dir.join("meta.env"))?;
    let mut o = String::new();
    let _ = writeln!(o, "## Retention: throughput while a backlog is pruned\n");
    let _ = writeln!(
        o,
        "{}, commit {}; scripts/bench-retention.sh (run by `make bench`), {} s per measurement, \
         one round. Load average before: {}, after: {}. **One run on a shared, noisy 2-core \
         machine**: the pairs ran back to back, so compare the ratios.\n",
        meta.text("date")?,
        meta.text("commit")?,
        meta.text("seconds")?,
        meta.text("load_start")?,
        meta.text("load_end")?,
    );
    let _ = writeln!(
        o,
        "For each load: a consumer without retention, then {} rows received two days ago \
         inserted and vacuumed, and a second consumer with `retention_days: {}` started, which \
         begins its first prune at once (chunks of 5000, oldest first, at most 10,000 rows a second), measured under \
         the same load as soon as it is ready. Its latency is the stall the first prune costs \
         `POST /event`. Target: with ≥ {TARGET_RATIO} × without at each point.\n",
        meta.text("backlog")?,
        meta.text("retention_days")?,
    );
    let _ = writeln!(o, "| load | without: events/s | with: events/s | with ÷ without | latency p50 / p99 / max without (ms) | with, during the first prune (ms) | backlog pruned during the run | all 2xx |");
    let _ = writeln!(o, "|---|---:|---:|---:|---|---|---:|---|");
    for p in points {
        let l = |l: &Latency| format!("{:.2} / {:.2} / {:.1}", l.p50_ms, l.p99_ms, l.max_ms);
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:.2} {} | {} | {} | {} of {} ({} left) | {} |",
            p.what,
            p.off_rate,
            p.on_rate,
            p.ratio(),
            if p.ratio() >= TARGET_RATIO {
                "(met)"
            } else {
                "(**missed**)"
            },
            l(&p.off_latency),
            l(&p.on_latency),
            p.pruned_during,
            p.backlog,
            p.left,
            if p.all_2xx { "yes" } else { "**no**" },
        );
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_with_over_without_and_zero_without_a_baseline() {
        let latency = Latency {
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
        };
        let mut point = Point {
            name: "wrk-8".into(),
            what: "x".into(),
            off_rate: 1000.0,
            on_rate: 850.0,
            off_latency: latency,
            on_latency: latency,
            backlog: 1_000_000,
            pruned_during: 600_000,
            left: 400_000,
            all_2xx: true,
        };
        assert!((point.ratio() - 0.85).abs() < 1e-9);
        point.off_rate = 0.0;
        assert_eq!(point.ratio(), 0.0);
    }
}
