//! The raw outputs scripts/bench.sh and scripts/bench-compare.sh collect, read into typed
//! measurements.
//!
//! Files in the output directory, per round R (1-based):
//! - `rR-pgbench-NAME.out`: pgbench's report (tps, failed transactions), and
//!   `rR-pgbench-NAME.latency`: `bench_report latency` of its per-transaction log;
//!   NAME is `insert-1`, `insert-8`, `insert-32`, `statement-1`, `keyed-1`.
//! - `rR-wrk-NAME.out`: wrk's output with bench/post_event.lua's `BENCH` line, and for a
//!   consumer `rR-wrk-NAME.facts` (`rows_added=`, `stored_delta=`, `peak_rss_kb=`) and
//!   `rR-wrk-NAME.cpu` (`consumer_cpu_ticks=`, `pg_cpu_ticks=`); NAME is `consumer-1`,
//!   `consumer-8`, `consumer-64`, the HTTPS consumer's `tls-1`, `tls-8`, `tls-64`, and
//!   `null-1` (make bench), or SIDE-`plain-N` and SIDE-`tls-N` with SIDE `a` or `b`
//!   (make bench-compare).
//! - `rR-connect-MODE-8.out`: bench's connect_rate with its `CONNECT` line, a new connection
//!   per request at 8 connections; MODE is `tls` (a full handshake each) or `plain`.
//! - `rR-write-PATH-N.out`: bench's write_paths with its `WRITE` line, batches of 100 rows
//!   straight into PostgreSQL at N connections; PATH is `copy`, `unnest`, `values`, `staging`.
//! - `rR-batch-NAME.out`: bench's batch_load with its `BATCH` line, `rR-batch-NAME.facts`
//!   (`rows_added=`, `stored_delta=`, `peak_rss_kb=`, `wal_bytes=`) and `rR-batch-NAME.cpu`;
//!   NAME is `plain-1`, `plain-8`, `plain-64`, `gzip-8` (make bench) or SIDE-N (make
//!   bench-compare), batches of 100 to `POST /events`.
//! - `meta.env`: one `key=value` a line about the run and the machine.
//! - `propagator.err` and `propagator.facts` (`rows_added=`) when the pacer ran.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::stats::Latency;

/// A raw output that is missing or not what the bench scripts write.
#[derive(Debug)]
pub struct InputError {
    pub file: PathBuf,
    pub what: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (scripts/bench.sh or bench-compare.sh writes it; run it again, or look at the raw outputs it kept in bench/out/ or bench/out-compare/)",
            self.file.display(),
            self.what
        )
    }
}

impl std::error::Error for InputError {}

fn read(file: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(file).map_err(|e| InputError {
        file: file.to_owned(),
        what: format!("cannot read it: {e}"),
    })
}

/// `key=value` pairs: one a line (`lines`), or separated by spaces on one line.
#[derive(Debug, Default)]
pub struct Fields {
    file: PathBuf,
    values: HashMap<String, String>,
}

impl Fields {
    pub fn lines(file: &Path) -> Result<Fields, InputError> {
        Ok(Fields::from_pairs(file, read(file)?.lines()))
    }

    /// The pairs of the last line of `file` that starts with `tag` and a space (the line a
    /// bench tool prints last).
    pub fn tagged_line(file: &Path, tag: &str) -> Result<Fields, InputError> {
        let text = read(file)?;
        let prefix = format!("{tag} ");
        let line = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&prefix))
            .ok_or_else(|| InputError {
                file: file.to_owned(),
                what: format!("no {tag} line (the tool prints it last)"),
            })?;
        Ok(Fields::from_pairs(file, line.split_whitespace()))
    }

    /// The pairs of one line of `file`, separated by white space.
    pub fn from_words(file: &Path, line: &str) -> Fields {
        Fields::from_pairs(file, line.split_whitespace())
    }

    /// Pairs separated by white space, on one line or more.
    pub fn words(file: &Path) -> Result<Fields, InputError> {
        Ok(Fields::from_pairs(file, read(file)?.split_whitespace()))
    }

    fn from_pairs<'a>(file: &Path, pairs: impl Iterator<Item = &'a str>) -> Fields {
        let values = pairs
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
            .collect();
        Fields {
            file: file.to_owned(),
            values,
        }
    }

    pub fn text(&self, key: &str) -> Result<&str, InputError> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| InputError {
                file: self.file.clone(),
                what: format!("no {key}="),
            })
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T, InputError> {
        let text = self.text(key)?;
        text.trim().parse().map_err(|_| InputError {
            file: self.file.clone(),
            what: format!("{key}={text} is not a number"),
        })
    }
}

/// Column 3 of pgbench's per-transaction logs: each transaction's latency in microseconds.
pub fn pgbench_log_micros(files: &[PathBuf]) -> Result<Vec<f64>, InputError> {
    let mut micros = Vec::new();
    for file in files {
        for (n, line) in read(file)?.lines().enumerate() {
            let value = line.split_whitespace().nth(2).and_then(|v| v.parse().ok());
            micros.push(value.ok_or_else(|| InputError {
                file: file.clone(),
                what: format!("line {} has no latency in column 3: `{line}`", n + 1),
            })?);
        }
    }
    Ok(micros)
}

/// One pgbench run: its rate and its latency.
#[derive(Debug, Clone)]
pub struct Pgbench {
    pub tps: f64,
    pub failed: u64,
    pub latency: Latency,
}

impl Pgbench {
    pub fn read(dir: &Path, round: usize, name: &str) -> Result<Pgbench, InputError> {
        let out = dir.join(format!("r{round}-pgbench-{name}.out"));
        let text = read(&out)?;
        let missing = |what: &str| InputError {
            file: out.clone(),
            what: format!("no `{what}` line"),
        };
        // "tps = 2857.123 (without initial connection time)"
        let tps = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| missing("tps = "))?;
        // "number of failed transactions: 0 (0.000%)"
        let failed = text
            .lines()
            .find_map(|l| l.strip_prefix("number of failed transactions: "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| missing("number of failed transactions: "))?;
        let lat = Fields::words(&dir.join(format!("r{round}-pgbench-{name}.latency")))?;
        Ok(Pgbench {
            tps,
            failed,
            latency: Latency {
                p50_ms: lat.number("p50_ms")?,
                p99_ms: lat.number("p99_ms")?,
                max_ms: lat.number("max_ms")?,
            },
        })
    }
}

/// What bench/post_event.lua's `BENCH` line says about one wrk run.
#[derive(Debug, Clone)]
pub struct Wrk {
    pub sent: u64,
    pub answered: u64,
    pub ok_2xx: u64,
    pub not_2xx: u64,
    pub socket_errors: u64,
    pub window_s: f64,
    pub latency: Latency,
}

impl Wrk {
    pub fn read(dir: &Path, round: usize, name: &str) -> Result<Wrk, InputError> {
        // bench/post_event.lua's done() prints the BENCH line.
        let f = Fields::tagged_line(&dir.join(format!("r{round}-wrk-{name}.out")), "BENCH")?;
        let ms = |key: &str| f.number::<f64>(key).map(|us| us / 1000.0);
        Ok(Wrk {
            sent: f.number("sent")?,
            answered: f.number("answered")?,
            ok_2xx: f.number("ok_2xx")?,
            not_2xx: f.number("not_2xx")?,
            socket_errors: f.number("socket_errors")?,
            window_s: f.number("window_s")?,
            latency: Latency {
                p50_ms: ms("p50_us")?,
                p99_ms: ms("p99_us")?,
                max_ms: ms("max_us")?,
            },
        })
    }

    /// Answers a second over the time events were sent.
    pub fn rate(&self) -> f64 {
        per_second(self.answered, self.window_s)
    }
}

/// The consumer under wrk: the BENCH line and what the table and the consumer said.
#[derive(Debug, Clone)]
pub struct ConsumerRun {
    pub wrk: Wrk,
    pub rows_added: u64,
    pub stored_delta: u64,
    pub peak_rss_kb: u64,
}

impl ConsumerRun {
    /// The run `rR-wrk-NAME`, e.g. `consumer-8` or `tls-8`.
    pub fn read(dir: &Path, round: usize, name: &str) -> Result<ConsumerRun, InputError> {
        let facts = Fields::lines(&dir.join(format!("r{round}-wrk-{name}.facts")))?;
        Ok(ConsumerRun {
            wrk: Wrk::read(dir, round, name)?,
            rows_added: facts.number("rows_added")?,
            stored_delta: facts.number("stored_delta")?,
            peak_rss_kb: facts.number("peak_rss_kb")?,
        })
    }

    /// Stored events a second: rows added over the time wrk sent events.
    pub fn rate(&self) -> f64 {
        per_second(self.rows_added, self.window_s())
    }

    fn window_s(&self) -> f64 {
        self.wrk.window_s
    }

    /// Every event sent was answered (none in flight), each 2xx added exactly one row, and the
    /// consumer's own counter agrees.
    pub fn rows_match(&self) -> bool {
        let w = &self.wrk;
        w.sent == w.answered
            && self.rows_added == w.ok_2xx
            && self.stored_delta == w.ok_2xx
            && w.not_2xx == 0
            && w.socket_errors == 0
    }
}

/// What connect_rate's `CONNECT` line says: connections opened, used once and closed.
#[derive(Debug, Clone)]
pub struct Connect {
    pub completed: u64,
    pub errors: u64,
    pub window_s: f64,
    /// From connect to the server's close (handshake, request, answer).
    pub latency: Latency,
}

impl Connect {
    pub fn read(dir: &Path, round: usize, name: &str) -> Result<Connect, InputError> {
        let f = Fields::tagged_line(&dir.join(format!("r{round}-connect-{name}.out")), "CONNECT")?;
        let ms = |key: &str| f.number::<f64>(key).map(|us| us / 1000.0);
        Ok(Connect {
            completed: f.number("completed")?,
            errors: f.number("errors")?,
            window_s: f.number("window_s")?,
            latency: Latency {
                p50_ms: ms("p50_us")?,
                p99_ms: ms("p99_us")?,
                max_ms: ms("max_us")?,
            },
        })
    }

    /// Connections completed a second.
    pub fn rate(&self) -> f64 {
        per_second(self.completed, self.window_s)
    }
}

/// CPU time of the consumer and of all PostgreSQL processes during one run (a `.cpu` file:
/// `consumer_cpu_ticks=`, `pg_cpu_ticks=`), in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub consumer_ticks: u64,
    pub pg_ticks: u64,
}

impl Cpu {
    pub fn read(file: &Path) -> Result<Cpu, InputError> {
        let f = Fields::lines(file)?;
        Ok(Cpu {
            consumer_ticks: f.number("consumer_cpu_ticks")?,
            pg_ticks: f.number("pg_cpu_ticks")?,
        })
    }
}

pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The propagator as a 1 kHz pacer: its summary line and the rows it added.
#[derive(Debug, Clone)]
pub struct Pacer {
    pub rate: f64,
    pub lateness_p99_ms: f64,
    pub skipped: u64,
    /// Skipped while every sender awaited the consumer: the consumer did not keep up.
    pub skipped_window_full: u64,
    pub in_flight_used: String,
    pub delivered: u64,
    pub rows_added: u64,
}

impl Pacer {
    /// None when the propagator printed no summary line (it is being changed, say).
    pub fn read(dir: &Path) -> Result<Option<Pacer>, InputError> {
        let err = dir.join("propagator.err");
        let text = read(&err)?;
        let Some(line) = text
            .lines()
            .rev()
            .find(|l| l.contains(" skipped_slots=") && l.contains("sent="))
        else {
            return Ok(None);
        };
        let f = Fields::from_pairs(&err, line.split_whitespace());
        let facts = Fields::lines(&dir.join("propagator.facts"))?;
        let trimmed = |key: &str, unit: &str| -> Result<f64, InputError> {
            let text = f.text(key)?;
            text.trim_end_matches(unit).parse().map_err(|_| InputError {
                file: err.clone(),
                what: format!("{key}={text} is not a number of {unit}"),
            })
        };
        Ok(Some(Pacer {
            rate: trimmed("rate", "/s")?,
            lateness_p99_ms: duration_ms(f.text("lateness_p99")?).ok_or_else(|| InputError {
                file: err.clone(),
                what: format!(
                    "lateness_p99={} is not a duration",
                    f.text("lateness_p99").unwrap_or("")
                ),
            })?,
            skipped: f.number("skipped_slots")?,
            skipped_window_full: f.number("skipped_window_full").unwrap_or(0),
            in_flight_used: f.text("max_in_flight_used").unwrap_or("?").to_owned(),
            delivered: f.number("delivered")?,
            rows_added: facts.number("rows_added")?,
        }))
    }
}

/// A duration as the propagator prints it (`0.038ms`, `1.2s`), in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().ok()
    } else {
        text.strip_suffix('s')?
            .parse::<f64>()
            .ok()
            .map(|s| s * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_in_milliseconds_or_seconds() {
        assert_eq!(duration_ms("0.038ms"), Some(0.038));
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
        assert_eq!(duration_ms("12"), None);
    }

    #[test]
    fn a_connect_line_gives_the_rate_over_its_window_and_latency_in_milliseconds() {
        let dir = std::env::temp_dir().join(format!("bench-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("r2-connect-tls-8.out"),
            "connect_rate: first error of 1: connect: refused\n\
             CONNECT mode=tls connections=8 completed=3000 errors=1 window_s=2.000 p50_us=4300 p99_us=13600 max_us=21000\n",
        )
        .unwrap();
        let c = Connect::read(&dir, 2, "tls-8");
        let missing = Connect::read(&dir, 1, "tls-8");
        std::fs::remove_dir_all(&dir).unwrap();
        let c = c.unwrap();
        assert_eq!((c.completed, c.errors), (3000, 1));
        assert_eq!(c.rate(), 1500.0);
        assert_eq!(c.latency.p99_ms, 13.6);
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("r1-connect-tls-8.out"));
    }

    #[test]
    fn fields_split_on_the_first_equals_sign() {
        let f = Fields::from_pairs(Path::new("x"), "a=1 b=x=y".split_whitespace());
        assert_eq!(f.number::<u32>("a").unwrap(), 1);
        assert_eq!(f.text("b").unwrap(), "x=y");
        assert!(f.text("c").unwrap_err().to_string().contains("no c="));
    }
}
