//! The events file and the random choice among its events.
//!
//! The file is checked entry by entry with the same rules the consumer applies
//! ([`common::parse_event_list`]), so the propagator never sends an event the consumer would
//! refuse for its content. Choice is uniform, from a seedable generator so that a run can be
//! replayed with `--seed`.

use std::fmt;
use std::path::{Path, PathBuf};

use common::{Event, EventListError};

/// Why the events file cannot be used. The message names the file (and the entry, if one is bad).
#[derive(Debug)]
pub enum EventsFileError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    Invalid {
        path: PathBuf,
        error: EventListError,
    },
}

impl fmt::Display for EventsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventsFileError::Read { path, error } => {
                write!(f, "cannot read events file {}: {error}", path.display())
            }
            EventsFileError::Invalid { path, error } => {
                write!(f, "events file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for EventsFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EventsFileError::Read { error, .. } => Some(error),
            EventsFileError::Invalid { error, .. } => Some(error),
        }
    }
}

/// Reads and validates the events file: a non-empty JSON array of valid events.
pub fn load(path: &Path) -> Result<Vec<Event>, EventsFileError> {
    let bytes = std::fs::read(path).map_err(|error| EventsFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(&bytes, path)
}

/// Validates the contents of an events file; `path` is used only in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Vec<Event>, EventsFileError> {
    common::parse_event_list(bytes).map_err(|error| EventsFileError::Invalid {
        path: path.to_owned(),
        error,
    })
}

/// Picks event indices uniformly at random from a seeded generator.
#[derive(Debug, Clone)]
pub struct Picker {
    len: usize,
    seed: u64,
    rng: fastrand::Rng,
}

impl Picker {
    /// A picker over `len` events (at least one). The same seed gives the same sequence.
    pub fn new(len: usize, seed: u64) -> Picker {
        assert!(len > 0, "the events file was checked to be non-empty");
        Picker {
            len,
            seed,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The seed this picker started from, for the log line that lets a run be replayed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The index of the next event to send.
    pub fn pick(&mut self) -> usize {
        // fastrand's ranged integers are unbiased (Lemire's method), unlike `u64() % len`.
        self.rng.usize(..self.len)
    }
}

/// A seed for a run that was not given one.
pub fn random_seed() -> u64 {
    fastrand::u64(..)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's chi-square statistic of observed counts against a uniform expectation.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    }

    /// The chi-square value that a uniform source exceeds with probability 0.001, for 13 degrees
    /// of freedom (14 events, as in the shipped events.json).
    const CRITICAL_13_DF: f64 = 34.53;
    const EVENTS: usize = 14;
    const DRAWS: usize = 140_000;

    #[test]
    fn choice_is_uniform_by_a_chi_square_test() {
        let mut picker = Picker::new(EVENTS, 20_240_601);
        let mut counts = [0u64; EVENTS];
        for _ in 0..DRAWS {
            counts[picker.pick()] += 1;
        }
        let statistic = chi_square(&counts);
        assert!(
            statistic < CRITICAL_13_DF,
            "chi-square {statistic:.1} with counts {counts:?}"
        );
    }

    #[test]
    fn the_chi_square_test_catches_a_slightly_biased_choice() {
        // `byte % 14` favours indices 0 to 3 by 1/18 (256 = 18 × 14 + 4): a bias of about 5 %
        // that a correct picker must not have, and that the test above must be able to see.
        let mut rng = fastrand::Rng::with_seed(20_240_601);
        let mut counts = [0u64; EVENTS];
        for _ in 0..DRAWS {
            counts[usize::from(rng.u8(..)) % EVENTS] += 1;
        }
        let statistic = chi_square(&counts);
        assert!(
            statistic > CRITICAL_13_DF,
            "the biased picker passed: chi-square {statistic:.1}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let sequence = |seed| {
            let mut picker = Picker::new(EVENTS, seed);
            (0..1_000).map(|_| picker.pick()).collect::<Vec<_>>()
        };
        assert_eq!(sequence(42), sequence(42));
        assert_ne!(sequence(42), sequence(43));
        assert_eq!(Picker::new(3, 42).seed(), 42);
    }

    #[test]
    fn the_shipped_events_file_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../events.json"));
        let events = load(path).unwrap();
        assert_eq!(events.len(), EVENTS);
    }

    #[test]
    fn errors_name_the_file_and_the_bad_entry() {
        let path = Path::new("conf/events.json");
        let cases: [(&str, &[&str], &str); 5] = [
            (
                r#"[{"event_type": "a", "event_payload": "x"}, {"event_type": "", "event_payload": "y"}]"#,
                &["conf/events.json", "index 1", "event_type"],
                "an empty event_type in the second entry",
            ),
            (
                r#"[{"event_type": "a", "event_payload": "x"}, {"event_type": "b", "event_payload": "x"}, {"event_type": "c"}]"#,
                &["conf/events.json", "index 2", "event_payload"],
                "a missing field in the third entry",
            ),
            (
                r#"[{"event_type": "a", "event_payload": 5}]"#,
                &["conf/events.json", "index 0", "string"],
                "a number where a string belongs",
            ),
            ("[]", &["conf/events.json", "empty"], "an empty array"),
            (
                r#"[{"event_type": "a", "#,
                &["conf/events.json", "JSON"],
                "broken JSON",
            ),
        ];
        for (text, needles, reason) in cases {
            let message = parse(text.as_bytes(), path).unwrap_err().to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{reason}: `{needle}` not in {message}"
                );
            }
        }
        let message = load(Path::new("/nonexistent/events.json"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("/nonexistent/events.json"),
            "a missing file: {message}"
        );
    }
}
