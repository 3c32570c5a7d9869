//! The propagator with and without its durable spool, in pairs close in time: single events at
//! `--max-in-flight 8` and batches of 100, each `r<N>-spool-<shape>-<off|on>.err` (the
//! propagator's stderr: its `summary:` line, and with a spool the `spool_events= fsyncs=` line).

use std::fmt::Write as _;
use std::path::Path;

use crate::inputs::{Fields, InputError};
use crate::stats::median_index;

/// The shapes measured, by the name in the file names, with how the report names them.
pub const SHAPES: [(&str, &str); 2] = [
    ("single", "single events, `--period 0 --max-in-flight 8`"),
    (
        "batch",
        "batches of 100, `--period 0 --batch-size 100 --max-in-flight 8`",
    ),
];

/// One propagator run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Events delivered per second (the summary's `throughput=`).
    pub throughput: f64,
    pub delivered: u64,
    pub sent: u64,
    /// With a spool: fsyncs per second and events per fsync.
    pub fsyncs: Option<(f64, f64)>,
}

impl Run {
    pub fn read(dir: &Path, round: usize, shape: &str, mode: &str) -> Result<Run, InputError> {
        let file = dir.join(format!("r{round}-spool-{shape}-{mode}.err"));
        let text = std::fs::read_to_string(&file).map_err(|e| InputError {
            file: file.clone(),
            what: format!("cannot read it: {e}"),
        })?;
        let summary = text
            .lines()
            .rev()
            .find(|l| l.contains("summary: ") && l.contains(" throughput="))
            .ok_or_else(|| InputError {
                file: file.clone(),
                what: "no summary line".into(),
            })?;
        let f = Fields::from_words(&file, summary);
        let throughput = f.text("throughput")?;
        let throughput = throughput
            .trim_end_matches("/s")
            .parse()
            .map_err(|_| InputError {
                file: file.clone(),
                what: format!("throughput={throughput} is not a rate"),
            })?;
        let fsyncs = match text.lines().rev().find(|l| l.contains(" fsyncs_per_s=")) {
            Some(line) => {
                let s = Fields::from_words(&file, line);
                Some((s.number("fsyncs_per_s")?, s.number("events_per_fsync")?))
            }
            None => None,
        };
        Ok(Run {
            throughput,
            delivered: f.number("delivered")?,
            sent: f.number("sent")?,
            fsyncs,
        })
    }
}

/// One round: per shape, the run without and the run with a spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub pairs: Vec<(Run, Run)>,
}

impl Round {
    pub fn read(dir: &Path, round: usize) -> Result<Round, InputError> {
        let pairs = SHAPES
            .iter()
            .map(|(shape, _)| {
                Ok((
                    Run::read(dir, round, shape, "off")?,
                    Run::read(dir, round, shape, "on")?,
                ))
            })
            .collect::<Result<_, InputError>>()?;
        Ok(Round { pairs })
    }

    /// With ÷ without, for shape `i`.
    pub fn ratio(&self, i: usize) -> f64 {
        let (off, on) = &self.pairs[i];
        on.throughput / off.throughput.max(f64::MIN_POSITIVE)
    }
}

/// Whether there are spool runs in `dir` (older raw directories have none).
pub fn measured(dir: &Path) -> bool {
    dir.join("r1-spool-batch-on.err").is_file()
}

/// The section: per shape the round with the median ratio, and every round's ratio.
pub fn render(rounds: &[Round], o: &mut String) {
    if rounds.is_empty() {
        return;
    }
    writeln!(o, "\n### The propagator's spool\n").ok();
    writeln!(o, "The load generator without and with `--spool-dir` (every event written and fsynced before its first attempt, fsyncs shared by group commit), in pairs close in time; the round with the median ratio is shown. Target: at least 0.8× for batches.\n").ok();
    writeln!(o, "| shape | without (events/s) | with spool (events/s) | with ÷ without | fsyncs/s | events per fsync | every round's ratio | target |").ok();
    writeln!(o, "|---|---:|---:|---:|---:|---:|---|---|").ok();
    for (i, (shape, label)) in SHAPES.iter().enumerate() {
        let ratios: Vec<f64> = rounds.iter().map(|r| r.ratio(i)).collect();
        let k = median_index(&ratios).unwrap_or(0);
        let (off, on) = &rounds[k].pairs[i];
        let (per_s, per_fsync) = on.fsyncs.unwrap_or((0.0, 0.0));
        let all: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let target = match *shape {
            "batch" if ratios[k] >= 0.8 => "≥ 0.8×: met",
            "batch" => "≥ 0.8×: MISSED",
            _ => "the figure",
        };
        let lost = |r: &Run| r.delivered != r.sent;
        let note = if lost(off) || lost(on) {
            " (not all delivered)"
        } else {
            ""
        };
        writeln!(
            o,
            "| {label} | {:.0} | {:.0} | {:.2}{note} | {per_s:.0} | {per_fsync:.1} | {} | {target} |",
            off.throughput,
            on.throughput,
            ratios[k],
            all.join(", ")
        )
        .ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_reads_both_runs_of_each_shape_and_their_ratio() {
        let dir = std::env::temp_dir().join(format!("bench-spool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (shape, _) in SHAPES {
            for (mode, rate) in [("off", 1000), ("on", 900)] {
                let spool = if mode == "on" {
                    "INFO spool s: spool_events=10 fsyncs=5 fsyncs_per_s=50.0 events_per_fsync=2.0\n"
                } else {
                    ""
                };
                std::fs::write(
                    dir.join(format!("r1-spool-{shape}-{mode}.err")),
                    format!("{spool}INFO summary: sent=10 delivered=10 throughput={rate}.00/s\n"),
                )
                .unwrap();
            }
        }
        let round = Round::read(&dir, 1);
        std::fs::remove_dir_all(&dir).unwrap();
        let round = round.unwrap();
        assert!((round.ratio(1) - 0.9).abs() < 1e-9);
        assert_eq!(round.pairs[0].1.fsyncs, Some((50.0, 2.0)));
        assert_eq!(round.pairs[0].0.fsyncs, None);
        let mut o = String::new();
        render(&[round], &mut o);
        assert!(o.contains("≥ 0.8×: met"), "{o}");
    }
}
