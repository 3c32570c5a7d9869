//! `make bench-compare`'s report: two consumer binaries A and B measured round by round on one
//! cluster (scripts/bench-compare.sh), each point's medians side by side with every round's
//! value, so whether B differs from A by more than the spread of the rounds can be read off.

use std::fmt::Write as _;
use std::path::Path;

use crate::batches::BatchRun;
use crate::inputs::{ConsumerRun, Cpu, Fields, InputError, Pgbench};
use crate::rounds::ratio;
use crate::stats::median;

/// The point that is pgbench's, once a round, not a side's.
pub const PGBENCH_POINT: &str = "pgbench-32";
/// The consumer point compared with [`PGBENCH_POINT`]: "64 connections ÷ pgbench 32".
pub const PGBENCH_PAIR: &str = "plain-64";

/// One table of the report: its title, the value of a sample it shows, and with how many
/// decimals.
struct Measure(&'static str, fn(&Sample) -> f64, usize);

const MEASURES: [Measure; 5] = [
    Measure("Stored events a second", |s| s.rate, 0),
    Measure("Latency p50 (ms)", |s| s.p50_ms, 2),
    Measure("Latency p99 (ms)", |s| s.p99_ms, 2),
    Measure("Consumer CPU per stored event (µs)", |s| s.consumer_us, 1),
    Measure("PostgreSQL CPU per stored event (µs)", |s| s.pg_us, 1),
];

/// The two sides, as the raw outputs name them.
const SIDES: [&str; 2] = ["a", "b"];

/// One consumer point of one side in one round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Stored events a second: rows added over the time the load was sent.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Rows added == 2xx answers (and the consumer's own count), nothing unanswered.
    pub rows_match: bool,
    /// CPU per stored event in microseconds: the consumer's and PostgreSQL's.
    pub consumer_us: f64,
    pub pg_us: f64,
}

impl Sample {
    /// `point` is `plain-N`, `tls-N` (wrk) or `batch-N` (batch_load); `side` is `a` or `b`.
    pub fn read(
        dir: &Path,
        round: usize,
        side: &str,
        point: &str,
        clk_tck: f64,
    ) -> Result<Sample, InputError> {
        let (rate, latency, rows_match, rows, cpu_file) =
            if let Some(conns) = point.strip_prefix("batch-") {
                let name = format!("{side}-{conns}");
                let b = BatchRun::read(dir, round, &name)?;
                let cpu = format!("r{round}-batch-{name}.cpu");
                (b.rate(), b.latency, b.rows_match(), b.rows_added, cpu)
            } else {
                let name = format!("{side}-{point}");
                let c = ConsumerRun::read(dir, round, &name)?;
                let cpu = format!("r{round}-wrk-{name}.cpu");
                (c.rate(), c.wrk.latency, c.rows_match(), c.rows_added, cpu)
            };
        let cpu = Cpu::read(&dir.join(cpu_file))?;
        let us = |ticks: u64| ticks as f64 / clk_tck * 1e6 / rows.max(1) as f64;
        Ok(Sample {
            rate,
            p50_ms: latency.p50_ms,
            p99_ms: latency.p99_ms,
            rows_match,
            consumer_us: us(cpu.consumer_ticks),
            pg_us: us(cpu.pg_ticks),
        })
    }
}

/// Everything one run measured.
#[derive(Debug)]
pub struct Comparison {
    pub meta: Fields,
    /// The consumer points in the order they ran, and per point `[side][round]`.
    pub points: Vec<(String, [Vec<Sample>; 2])>,
    /// pgbench's transactions a second per round; empty when [`PGBENCH_POINT`] did not run.
    pub pgbench: Vec<f64>,
}

impl Comparison {
    pub fn read(dir: &Path, rounds: usize) -> Result<Comparison, InputError> {
        let meta = Fields::lines(&dir.join("meta.env"))?;
        let clk_tck = meta.number::<f64>("clk_tck")?;
        let names: Vec<String> = meta
            .text("points")?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut points = Vec::new();
        for name in names.iter().filter(|n| *n != PGBENCH_POINT) {
            let side = |side: &str| {
                (1..=rounds)
                    .map(|r| Sample::read(dir, r, side, name, clk_tck))
                    .collect::<Result<Vec<_>, _>>()
            };
            points.push((name.clone(), [side(SIDES[0])?, side(SIDES[1])?]));
        }
        let pgbench = if names.iter().any(|n| n == PGBENCH_POINT) {
            (1..=rounds)
                .map(|r| Pgbench::read(dir, r, "insert-32").map(|p| p.tps))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Comparison {
            meta,
            points,
            pgbench,
        })
    }

    pub fn render(&self) -> Result<String, InputError> {
        let m = &self.meta;
        let (a, b) = (m.text("label_a")?, m.text("label_b")?);
        let rounds = self
            .pgbench
            .len()
            .max(self.points.first().map_or(0, |(_, sides)| sides[0].len()));
        let mut o = String::new();
        writeln!(o, "# {a} against {b}, interleaved\n").ok();
        for (label, side) in [(a, "a"), (b, "b")] {
            let env = m.text(&format!("env_{side}")).unwrap_or("");
            writeln!(
                o,
                "- **{label}**: `{}`{}",
                m.text(&format!("bin_{side}"))?,
                if env.is_empty() {
                    String::new()
                } else {
                    format!(" with `{env}`")
                }
            )
            .ok();
        }
        writeln!(
            o,
            "\nRun of {}: {rounds} rounds of {} s a measurement; odd rounds measure {a} then {b} at each point, even rounds {b} then {a}; a CHECKPOINT and 1 s pause before each. One PostgreSQL {} ({}) on {} cores ({}); load average {} at the start, {} at the end. Each side ran a plain and an HTTPS consumer for the whole run. Medians are the lower middle round; B ÷ A is {b}'s median over {a}'s; \"spread\" says whether every round of one side lies above every round of the other (\"apart\") or the rounds overlap.",
            m.text("date")?,
            m.text("seconds")?,
            m.text("pg_version")?,
            m.text("durability")?,
            m.text("cores")?,
            m.text("cpu")?,
            m.text("load_start")?,
            m.text("load_end")?,
        )
        .ok();
        for &Measure(title, value, digits) in &MEASURES {
            writeln!(o, "\n## {title}\n").ok();
            writeln!(
                o,
                "| point | {a} | {b} | B ÷ A | spread | {a}, rounds | {b}, rounds |"
            )
            .ok();
            writeln!(o, "|---|---:|---:|---:|---|---|---|").ok();
            for (name, sides) in &self.points {
                let [va, vb] = sides
                    .each_ref()
                    .map(|s| s.iter().map(value).collect::<Vec<_>>());
                let (ma, mb) = (median(&va), median(&vb));
                writeln!(
                    o,
                    "| {} | {ma:.digits$} | {mb:.digits$} | {:.2} | {} | {} | {} |",
                    point_title(name),
                    ratio(mb, ma),
                    spread(&va, &vb),
                    list(&va, digits),
                    list(&vb, digits)
                )
                .ok();
            }
        }
        let bad: Vec<String> = self
            .points
            .iter()
            .flat_map(|(name, sides)| {
                [a, b].into_iter().zip(sides).flat_map(move |(label, s)| {
                    s.iter()
                        .enumerate()
                        .filter(|(_, s)| !s.rows_match)
                        .map(move |(r, _)| format!("{label} {name} round {}", r + 1))
                })
            })
            .collect();
        writeln!(
            o,
            "\nRows added == 2xx answers (and the consumer's own count) in every run: {}.",
            if bad.is_empty() {
                "yes".to_owned()
            } else {
                format!("NO: {}", bad.join(", "))
            }
        )
        .ok();
        self.render_pgbench(a, b, &mut o);
        Ok(o)
    }

    /// "64 connections ÷ pgbench 32" per side, each round against the pgbench of its round.
    fn render_pgbench(&self, a: &str, b: &str, o: &mut String) {
        let Some((_, sides)) = self.points.iter().find(|(n, _)| n == PGBENCH_PAIR) else {
            return;
        };
        if self.pgbench.is_empty() {
            return;
        }
        writeln!(o, "\n## 64 connections ÷ pgbench at 32 clients\n").ok();
        writeln!(
            o,
            "pgbench (bench/insert.sql, 32 clients) once a round: {} transactions/s by round.\n",
            list(&self.pgbench, 0)
        )
        .ok();
        writeln!(o, "| consumer | median | rounds |").ok();
        writeln!(o, "|---|---:|---|").ok();
        for (label, samples) in [a, b].into_iter().zip(sides) {
            let ratios: Vec<f64> = samples
                .iter()
                .zip(&self.pgbench)
                .map(|(s, tps)| ratio(s.rate, *tps))
                .collect();
            writeln!(
                o,
                "| {label} | {:.2} | {} |",
                median(&ratios),
                list(&ratios, 2)
            )
            .ok();
        }
    }
}

fn list(values: &[f64], digits: usize) -> String {
    let texts: Vec<String> = values.iter().map(|v| format!("{v:.digits$}")).collect();
    texts.join(", ")
}

/// Whether the rounds of the two sides overlap, or every round of one lies above every round
/// of the other.
fn spread(a: &[f64], b: &[f64]) -> &'static str {
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if a.is_empty() || b.is_empty() {
        "-"
    } else if min(b) > max(a) {
        "B above, apart"
    } else if max(b) < min(a) {
        "B below, apart"
    } else {
        "overlap"
    }
}

fn point_title(name: &str) -> String {
    let (kind, conns) = name.rsplit_once('-').unwrap_or((name, "?"));
    let what = match kind {
        "plain" => "single events, HTTP",
        "tls" => "single events, HTTPS",
        "batch" => "batches of 100, HTTP",
        other => other,
    };
    format!(
        "{what}, {conns} conn{}",
        if conns == "1" { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_says_apart_only_when_no_round_of_one_side_reaches_the_other() {
        assert_eq!(spread(&[1.0, 2.0], &[3.0, 4.0]), "B above, apart");
        assert_eq!(spread(&[3.0, 4.0], &[1.0, 2.0]), "B below, apart");
        assert_eq!(spread(&[1.0, 3.0], &[2.0, 4.0]), "overlap");
        assert_eq!(spread(&[], &[1.0]), "-");
    }

    #[test]
    fn point_titles_name_the_load_and_the_connections() {
        assert_eq!(point_title("tls-64"), "single events, HTTPS, 64 conns");
        assert_eq!(point_title("batch-1"), "batches of 100, HTTP, 1 conn");
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    /// One wrk run of `side` at plain-64 in `round`: `rows` stored over 2 s, CPU in ticks.
    fn wrk_run(dir: &Path, round: usize, side: &str, rows: u64, ticks: u64) {
        let name = format!("r{round}-wrk-{side}-plain-64");
        write(
            dir,
            &format!("{name}.out"),
            &format!("BENCH sent={rows} answered={rows} ok_2xx={rows} not_2xx=0 socket_errors=0 window_s=2.0 p50_us=1000 p99_us=3000 max_us=9000\n"),
        );
        write(
            dir,
            &format!("{name}.facts"),
            &format!("peak_rss_kb=1000\nrows_added={rows}\nstored_delta={rows}\n"),
        );
        write(
            dir,
            &format!("{name}.cpu"),
            &format!("consumer_cpu_ticks={ticks}\npg_cpu_ticks={}\n", 2 * ticks),
        );
    }

    #[test]
    fn the_report_gives_medians_each_round_and_the_ratio_to_pgbench_of_the_same_round() {
        let dir = std::env::temp_dir().join(format!("bench-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir,
            "meta.env",
            "date=2026-12-07 00:00 UTC\nseconds=2\npoints=plain-64 pgbench-32\nlabel_a=before\nlabel_b=after\nbin_a=/a\nbin_b=/b\nenv_a=\nenv_b=EXP=1\ncores=2\ncpu=x\npg_version=16\ndurability=fsync=on\nload_start=0\nload_end=0\nclk_tck=100\n",
        );
        // Round 1: A 20000 rows (10000/s), B 30000; round 2: A 24000, B 32000. 20 ticks of
        // 100/s over 20000 rows: 10 µs an event.
        wrk_run(&dir, 1, "a", 20_000, 20);
        wrk_run(&dir, 1, "b", 30_000, 15);
        wrk_run(&dir, 2, "a", 24_000, 24);
        wrk_run(&dir, 2, "b", 32_000, 16);
        for (round, tps) in [(1, 5000), (2, 6000)] {
            write(
                &dir,
                &format!("r{round}-pgbench-insert-32.out"),
                &format!("number of failed transactions: 0 (0.000%)\ntps = {tps}.0 (without initial connection time)\n"),
            );
            write(
                &dir,
                &format!("r{round}-pgbench-insert-32.latency"),
                "p50_ms=1 p99_ms=2 max_ms=3 count=10\n",
            );
        }
        let report = Comparison::read(&dir, 2).and_then(|c| c.render());
        std::fs::remove_dir_all(&dir).unwrap();
        let report = report.unwrap();
        assert!(report.contains("# before against after"), "{report}");
        assert!(report.contains("with `EXP=1`"), "{report}");
        // Lower-middle medians: A 10000, B 15000; B ÷ A 1.50; rounds apart.
        assert!(
            report.contains("| single events, HTTP, 64 conns | 10000 | 15000 | 1.50 | B above, apart | 10000, 12000 | 15000, 16000 |"),
            "{report}"
        );
        assert!(
            report.contains("| single events, HTTP, 64 conns | 10.0 | 5.0 | 0.50 | B below, apart | 10.0, 10.0 | 5.0, 5.0 |"),
            "{report}"
        );
        assert!(report.contains("in every run: yes"), "{report}");
        // A: 10000 / 5000 = 2.00, 12000 / 6000 = 2.00; B: 3.00, 2.67.
        assert!(
            report.contains("| before | 2.00 | 2.00, 2.00 |"),
            "{report}"
        );
        assert!(report.contains("| after | 2.67 | 3.00, 2.67 |"), "{report}");
    }
}
