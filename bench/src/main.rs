//! `bench_report`: the statistics and the reports of `make bench` and `make bench-compare`,
//! from the raw outputs that scripts/bench.sh and scripts/bench-compare.sh collect (they run
//! the cluster, pgbench and the load; this computes).
//!
//! ```text
//! bench_report latency LOG...              p50_ms= p99_ms= max_ms= count= of pgbench logs
//! bench_report report --dir DIR --rounds N write the report of DIR's raw outputs to stdout
//! bench_report spool --dir DIR --rounds N  only the propagator's spool section (scripts/bench-spool.sh)
//! bench_report compare --dir DIR --rounds N  the same for scripts/bench-compare.sh's outputs:
//!                                          two consumers, point by point, round by round
//! bench_report retention --dir DIR         the retention section (scripts/bench-retention.sh)
//! ```
//!
//! The files it reads are listed in `inputs.rs`. Errors name the file and what is wrong with
//! it; exit status 1, 2 for bad usage.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;

use bench::batches::{BatchRound, LoadGenerator};
use bench::compare::Comparison;
use bench::inputs::{self, Fields, InputError, Pacer};
use bench::report::Report;
use bench::rounds::Round;
use bench::stats::Latency;

const USAGE: &str = "usage: bench_report latency LOG...
       bench_report report --dir DIR --rounds N
       bench_report spool --dir DIR --rounds N
       bench_report compare --dir DIR --rounds N
       bench_report retention --dir DIR";

fn main() -> ExitCode {
    match parse_args() {
        Err(message) => {
            eprintln!("bench_report: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(task) => match run(task) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench_report: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

#[derive(Debug)]
enum Task {
    Latency { logs: Vec<PathBuf> },
    Report { dir: PathBuf, rounds: usize },
    Compare { dir: PathBuf, rounds: usize },
    Retention { dir: PathBuf },
    Spool { dir: PathBuf, rounds: usize },
}

fn run(task: Task) -> Result<(), InputError> {
    match task {
        Task::Latency { logs } => {
            let micros = inputs::pgbench_log_micros(&logs)?;
            let count = micros.len();
            let l = Latency::of_micros(micros).ok_or_else(|| InputError {
                file: logs[0].clone(),
                what: "pgbench logged no transaction".into(),
            })?;
            println!(
                "p50_ms={:.2} p99_ms={:.2} max_ms={:.1} count={count}",
                l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        Task::Report { dir, rounds } => {
            let report = Report {
                meta: Fields::lines(&dir.join("meta.env"))?,
                rounds: (1..=rounds)
                    .map(|r| Round::read(&dir, r))
                    .collect::<Result<_, _>>()?,
                batches: (1..=rounds)
                    .map(|r| BatchRound::read(&dir, r))
                    .collect::<Result<_, _>>()?,
                load: LoadGenerator::read(&dir)?,
                dir: dir.clone(),
                pacer: if dir.join("propagator.err").is_file() {
                    Pacer::read(&dir)?
                } else {
                    None
                },
                spool: if bench::spool::measured(&dir) {
                    (1..=rounds)
                        .map(|r| bench::spool::Round::read(&dir, r))
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                },
            };
            print!("{}", report.render()?);
        }
        Task::Spool { dir, rounds } => {
            let rounds = (1..=rounds)
                .map(|r| bench::spool::Round::read(&dir, r))
                .collect::<Result<Vec<_>, _>>()?;
            let mut o = String::new();
            bench::spool::render(&rounds, &mut o);
            print!("{o}");
        }
        Task::Compare { dir, rounds } => {
            print!("{}", Comparison::read(&dir, rounds)?.render()?);
        }
        Task::Retention { dir } => {
            let points = bench::retention::read(&dir)?;
            print!("{}", bench::retention::render(&dir, &points)?);
        }
    }
    Ok(())
}

fn parse_args() -> Result<Task, String> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next().map_err(|e| e.to_string())? {
        Some(Value(v)) => v.string().map_err(|e| e.to_string())?,
        _ => return Err("no command given".into()),
    };
    let mut dir = None;
    let mut rounds = None;
    let mut values = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("dir") => dir = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?)),
            Long("rounds") => {
                let n: usize = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
                rounds = Some(n).filter(|&n| n > 0);
            }
            Value(v) => values.push(PathBuf::from(v)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    match command.as_str() {
        "latency" if !values.is_empty() => Ok(Task::Latency { logs: values }),
        "latency" => Err("latency needs pgbench's log files".into()),
        "report" => Ok(Task::Report {
            dir: dir.ok_or("report needs --dir DIR")?,
            rounds: rounds.ok_or("report needs --rounds N (a positive number)")?,
        }),
        "spool" => Ok(Task::Spool {
            dir: dir.ok_or("spool needs --dir DIR")?,
            rounds: rounds.ok_or("spool needs --rounds N (a positive number)")?,
        }),
        "compare" => Ok(Task::Compare {
            dir: dir.ok_or("compare needs --dir DIR")?,
            rounds: rounds.ok_or("compare needs --rounds N (a positive number)")?,
        }),
        "retention" => Ok(Task::Retention {
            dir: dir.ok_or("retention needs --dir DIR")?,
        }),
        other => Err(format!("unknown command `{other}`")),
    }
}
