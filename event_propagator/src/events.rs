//! The events file and the random choice among its events.
//!
//! The file is a batch without keys, checked item by item by the parser of `POST /events`
//! ([`common::read_event_list`]), so the propagator never sends an event the consumer would
//! refuse for its content. Choice is uniform, from a seedable generator so that a run can be
//! replayed with `--seed`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::BatchError;

use crate::event_set::EventSet;

/// Why the events file cannot be used. The message names the file (and the item's index and
/// field, if one is bad).
#[derive(Debug)]
pub enum EventsFileError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    Invalid {
        path: PathBuf,
        error: BatchError,
    },
}

impl fmt::Display for EventsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventsFileError::Read { path, error } => {
                write!(f, "cannot read events file {}: {error}", path.display())
            }
            EventsFileError::Invalid { path, error } => {
                write!(f, "events file {}: ", path.display())?;
                describe(error, f)
            }
        }
    }
}

/// What is wrong with the file's contents, worded for a file (`BatchError`'s own words are the
/// answers of `POST /events`, about a request body).
fn describe(error: &BatchError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match error {
        BatchError::Invalid { index, error } => write!(f, "event at index {index}: {error}"),
        BatchError::Empty => f.write_str("holds no events: the array is empty"),
        BatchError::NotAnArray { found } => {
            write!(f, "must be a JSON array of events, found {found}")
        }
        BatchError::InvalidJson { message, .. } => write!(f, "not valid JSON: {message}"),
        // Not produced for a file: it is read as JSON text, and has no item limit.
        BatchError::NotUtf8 { .. } | BatchError::TooMany { .. } => write!(f, "{error}"),
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

/// Largest events file read: far beyond any hand-written file (the shipped one is 1 KiB), and
/// small enough that a mistaken path (a log, `/dev/zero`) is refused rather than filling memory.
pub const EVENTS_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Reads and validates the events file: a regular file of at most [`EVENTS_MAX_BYTES`] holding a
/// non-empty JSON array of valid events (a leading byte order mark is skipped).
///
/// The file is parsed as it is read, each event stored as soon as it is checked, so the text is
/// never held whole: memory peaks at about the file's size (a 125 MB file of 600 000 events:
/// see `tests/soak/memory.rs`), where reading it whole first cost about three times that.
pub fn load(path: &Path) -> Result<EventSet, EventsFileError> {
    load_limited(path, EVENTS_MAX_BYTES)
}

fn load_limited(path: &Path, limit: u64) -> Result<EventSet, EventsFileError> {
    let read_error = |error| EventsFileError::Read {
        path: path.to_owned(),
        error,
    };
    let (file, metadata) = common::file::open_regular(path).map_err(read_error)?;
    if metadata.len() > limit {
        return Err(read_error(common::file::too_large(limit)));
    }
    // Bodies are about as long as the file's text; untouched room costs no memory and is given
    // back below.
    let mut events = EventSet::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // One byte over the limit is enough to tell that the file is too large (it may have grown).
    let mut reader = file.take(limit.saturating_add(1));
    let parsed = common::read_event_list(&mut reader, |event| events.push(&event));
    if reader.limit() == 0 {
        return Err(read_error(common::file::too_large(limit)));
    }
    match parsed.map_err(read_error)? {
        Ok(_) => {
            events.shrink_to_fit();
            Ok(events)
        }
        Err(error) => Err(EventsFileError::Invalid {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Validates the contents of an events file; `path` is used only in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<EventSet, EventsFileError> {
    let mut events = EventSet::default();
    let parsed = common::read_event_list(bytes, |event| events.push(&event));
    // A slice never fails to read; the error is mapped all the same rather than unwrapped.
    let parsed = parsed.map_err(|error| EventsFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    parsed.map_err(|error| EventsFileError::Invalid {
        path: path.to_owned(),
        error,
    })?;
    Ok(events)
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

    fn temp_dir() -> std::path::PathBuf {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("events-rs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_with_a_utf8_byte_order_mark_loads() {
        let dir = temp_dir();
        let path = dir.join("events.json");
        std::fs::write(
            &path,
            b"\xEF\xBB\xBF[{\"event_type\": \"a\", \"event_payload\": \"b\"}]\n",
        )
        .unwrap();
        let events = load(&path).unwrap();
        assert_eq!((events.len(), events.event_type(0)), (1, "a"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_over_the_limit_or_not_regular_are_refused_naming_the_file() {
        let dir = temp_dir();
        let json = r#"[{"event_type": "a", "event_payload": "b"}]"#;
        let path = dir.join("events.json");
        std::fs::write(&path, json).unwrap();
        let limit = json.len() as u64;
        assert_eq!(
            load_limited(&path, limit).unwrap().len(),
            1,
            "exactly at the limit"
        );
        let fifo = dir.join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        let cases = [
            (
                path.as_path(),
                limit - 1,
                "larger than the limit of",
                "one byte over",
            ),
            (
                fifo.as_path(),
                EVENTS_MAX_BYTES,
                "named pipe",
                "a FIFO, which would block",
            ),
            (
                Path::new("/dev/zero"),
                EVENTS_MAX_BYTES,
                "character device",
                "endless",
            ),
        ];
        for (path, limit, needle, reason) in cases {
            let message = load_limited(path, limit).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("cannot read events file {}: ", path.display())),
                "{reason}: {message}"
            );
            assert!(message.contains(needle), "{reason}: {message}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
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
