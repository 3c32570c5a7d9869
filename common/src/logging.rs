//! A minimal logger for both services: one line per record on stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry a `<N>` syslog priority prefix and no
//! timestamp, since journald stamps and classifies each line itself. Elsewhere (a terminal,
//! cron mail, a file) each line starts with an RFC 3339 UTC timestamp and the level.
//! The level comes from `LOG_LEVEL` (error, warn, info, debug, trace; default info).

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    journald: bool,
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
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
    fn parses_levels_case_insensitively() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(" warn "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
