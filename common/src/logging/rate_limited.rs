//! [`RateLimited`]: one kind of log line that may come in storms (a failing accept, retries
//! during an outage, skipped slots, a lasting outage's reminder), written at most once per
//! interval with a count of the ones left out.
//!
//! The caller passes the time in, so the limits are unit-tested exactly; it also holds the
//! value (usually behind its own lock), so one kind of line is limited however many threads
//! write it.

use std::fmt;
use std::time::{Duration, Instant};

use log::Level;

/// The first line at once, then at most one per `interval`, the ones in between counted and
/// named in the next line that is written: "(N similar {what} not logged)".
#[derive(Debug, Clone)]
pub struct RateLimited {
    level: Level,
    interval: Duration,
    /// What the left-out lines are, in the count's words ("errors", "warnings").
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// Lines at `level`, at most one per `interval`; `what` names them in the count.
    pub const fn new(level: Level, interval: Duration, what: &'static str) -> RateLimited {
        RateLimited {
            level,
            interval,
            what,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether a line may be written at `now`: if so, how many were left out since the last
    /// one (and the interval starts again); if not, this one is counted as left out.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Writes `message` at the level if [`RateLimited::allow`] lets it through, with the count
    /// of the left-out lines when there were any. True when it wrote.
    pub fn log(&mut self, now: Instant, message: fmt::Arguments<'_>) -> bool {
        match self.allow(now) {
            Some(left_out) => {
                log::log!(self.level, "{}", self.line(message, left_out));
                true
            }
            None => false,
        }
    }

    /// A line of this kind was written some other way at `now` (a change of cause, say): the
    /// next one is due an interval later.
    pub fn logged_at(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// The line as written: the message, and the count of left-out lines if any.
    fn line(&self, message: fmt::Arguments<'_>, left_out: u64) -> String {
        match left_out {
            0 => message.to_string(),
            n => format!("{message} ({n} similar {} not logged)", self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second() -> RateLimited {
        RateLimited::new(Level::Warn, Duration::from_secs(1), "warnings")
    }

    #[test]
    fn the_first_line_goes_at_once_then_one_per_interval_with_a_count_of_the_rest() {
        let mut limited = per_second();
        let t0 = Instant::now();
        assert_eq!(limited.allow(t0), Some(0));
        let held: Vec<_> = (1..=999)
            .map(|ms| limited.allow(t0 + Duration::from_millis(ms)))
            .collect();
        assert!(held.iter().all(Option::is_none));
        assert_eq!(limited.allow(t0 + Duration::from_millis(1_000)), Some(999));
        assert_eq!(limited.allow(t0 + Duration::from_millis(1_001)), None);
        assert_eq!(limited.allow(t0 + Duration::from_millis(5_000)), Some(1));
    }

    #[test]
    fn a_line_written_another_way_starts_the_interval_again() {
        let mut reminder = RateLimited::new(Level::Warn, Duration::from_secs(60), "reminders");
        let t0 = Instant::now();
        reminder.logged_at(t0);
        assert_eq!(reminder.allow(t0 + Duration::from_secs(59)), None);
        assert_eq!(reminder.allow(t0 + Duration::from_secs(60)), Some(1));
        reminder.logged_at(t0 + Duration::from_secs(90));
        assert_eq!(reminder.allow(t0 + Duration::from_secs(120)), None);
        assert_eq!(reminder.allow(t0 + Duration::from_secs(150)), Some(1));
    }

    #[test]
    fn the_count_of_left_out_lines_is_named_only_when_there_were_some() {
        let limited = RateLimited::new(Level::Warn, Duration::from_secs(5), "errors");
        assert_eq!(
            limited.line(format_args!("accept failed"), 0),
            "accept failed"
        );
        assert_eq!(
            limited.line(format_args!("accept failed"), 7),
            "accept failed (7 similar errors not logged)"
        );
    }

    #[test]
    fn a_line_is_written_only_when_allowed() {
        let mut limited = per_second();
        let t0 = Instant::now();
        assert!(limited.log(t0, format_args!("first")));
        assert!(!limited.log(t0 + Duration::from_millis(10), format_args!("second")));
        assert!(limited.log(t0 + Duration::from_secs(1), format_args!("third")));
    }
}
