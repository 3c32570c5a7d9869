//! A minimal logger for both services: one line per record on stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry a `<N>` syslog priority prefix and no
//! timestamp, since journald stamps and classifies each line itself. Elsewhere (a terminal,
//! cron mail, a file) each line starts with an RFC 3339 UTC timestamp and the level.
//! The level comes from `LOG_LEVEL` (error, warn, info, debug, trace; default info). The
//! PostgreSQL driver's debug records (statements with their parameters) show only at trace.
//!
//! Lines that may come in storms go through [`RateLimited`] (`rate_limited.rs`).

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

mod rate_limited;

pub use rate_limited::RateLimited;

struct StderrLogger {
    journald: bool,
    level: LevelFilter,
}

/// Dependencies whose debug records carry data: tokio_postgres logs every statement with its
/// parameters (`executing statement … with parameters: […]`), i.e. each payload and key. Their
/// debug records count as trace, so `LOG_LEVEL=debug` shows our own debug lines without them.
const DATA_LOGGING_TARGETS: [&str; 4] = [
    "postgres",
    "tokio_postgres",
    "postgres_protocol",
    "postgres_types",
];

/// The level a record is shown at: its own, or trace for the debug records of a crate in
/// [`DATA_LOGGING_TARGETS`].
fn effective_level(metadata: &Metadata<'_>) -> Level {
    let target = metadata.target();
    let crate_name = target.split("::").next().unwrap_or(target);
    if metadata.level() >= Level::Debug && DATA_LOGGING_TARGETS.contains(&crate_name) {
        Level::Trace
    } else {
        metadata.level()
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        effective_level(metadata) <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One write per line, so lines from several threads never interleave.
        let line = if self.journald {
            format!("<{}>{}\n", syslog_priority(record.level()), record.args())
        } else {
            let now = humantime::format_rfc3339_millis(SystemTime::now());
            format!("{now} {:<5} {}\n", record.level(), record.args())
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Parses a `LOG_LEVEL` value.
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    value.trim().parse().ok()
}

/// Installs the logger once; later calls do nothing. An unknown `LOG_LEVEL` falls back to info
/// with a warning rather than stopping the service.
pub fn init() {
    let raw = std::env::var("LOG_LEVEL").ok();
    let level = raw.as_deref().map(parse_level);
    let logger = StderrLogger {
        journald: std::env::var_os("JOURNAL_STREAM").is_some(),
        level: level.flatten().unwrap_or(LevelFilter::Info),
    };
    let max = logger.level;
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
        if let (Some(raw), Some(None)) = (raw, level) {
            log::warn!(
                "LOG_LEVEL={raw:?} is not a level (error, warn, info, debug, trace); using info"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_driver_debug_records_show_only_at_trace() {
        let logger = |level| StderrLogger {
            journald: false,
            level,
        };
        let record = |level, target| Metadata::builder().level(level).target(target).build();
        let cases = [
            (
                Level::Debug,
                "tokio_postgres::query",
                LevelFilter::Debug,
                false,
                "statement parameters",
            ),
            (
                Level::Debug,
                "tokio_postgres::query",
                LevelFilter::Trace,
                true,
                "asked for trace",
            ),
            (
                Level::Debug,
                "postgres",
                LevelFilter::Debug,
                false,
                "the blocking wrapper",
            ),
            (
                Level::Trace,
                "postgres_protocol::message",
                LevelFilter::Trace,
                true,
                "trace is trace",
            ),
            (
                Level::Info,
                "tokio_postgres::connection",
                LevelFilter::Info,
                true,
                "server notices",
            ),
            (
                Level::Debug,
                "event_consumer::pipeline",
                LevelFilter::Debug,
                true,
                "our own debug",
            ),
            (
                Level::Debug,
                "postgresql_tools",
                LevelFilter::Debug,
                true,
                "only whole crate names",
            ),
            (
                Level::Debug,
                "ureq::run",
                LevelFilter::Debug,
                true,
                "ureq redacts at debug",
            ),
        ];
        for (level, target, filter, shown, reason) in cases {
            assert_eq!(
                logger(filter).enabled(&record(level, target)),
                shown,
                "{reason}: {level} from {target} at LOG_LEVEL={filter}"
            );
        }
    }

    #[test]
    fn parses_levels_case_insensitively() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(" warn "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
