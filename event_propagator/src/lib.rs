//! The event propagator: sends randomly chosen events from a JSON file to the consumer on a
//! fixed-rate schedule, retrying each one until the consumer has it, so that no generated event
//! is silently lost (every one ends delivered, or logged as rejected, given up or abandoned) and
//! none is stored twice (each carries an `Idempotency-Key`, the same on every retry).
//!
//! The flow is [`Propagator::new`] (load and check the events, build the HTTP agent), then
//! [`Propagator::tick`] again and again (wait for the next slot, pick, log the key, send with
//! retries, say what happened) until it reports the end, then the [`Summary`]. Tests drive
//! single ticks on their own thread. [`Propagator::run_until_stopped`] runs the ticks on up to
//! `max_in_flight` sender threads that take turns at the schedule (see [`window`]): the thread
//! whose turn it is waits for the next slot, takes it, hands the turn on and sends the event
//! itself, so a slot waits only when every sender is busy, not for the previous answer, and a
//! consumer that stalls for a few periods costs no slots. Events may therefore be stored in
//! another order than they were generated. With `max_in_flight: 1` it sends one event at a
//! time (the next slot waits for the current event). Meanwhile the calling thread watches: it
//! starts another sender thread when a slot is (about to be) due and every one is busy, and
//! after a stop request it waits at most `shutdown_timeout_seconds` for the sends in flight, so
//! that hanging sends cannot hold the process.
//!
//! What it does not do: it keeps no queue of unsent events (a stopped propagator simply stops
//! generating; slots that a busy window or a stall left more than 20 ms behind are skipped, not
//! queued), never fires skipped slots in a burst, and does not read the consumer's database.
#![forbid(unsafe_code)]

pub mod cli;
pub mod events;
pub mod keys_log;
pub mod schedule;
pub mod sender;
pub mod stats;
pub mod stop;
pub mod window;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::config::PropagatorConfig;
use common::Secret;

pub use schedule::Slot;
pub use sender::{Delivery, Outcome};
pub use stats::{End, Stats, Summary};
pub use stop::Stop;

use events::{EventsFileError, Picker};
use keys_log::KeysLog;
use schedule::Schedule;
use sender::{Backoff, Sender, SenderConfig, WarnLimiter};
use stats::InFlight;

/// Everything a run needs: the `propagator` config section with the command-line overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub endpoint: String,
    pub period: Duration,
    pub events_file: PathBuf,
    pub auth_token: Option<Secret>,
    pub max_retries: u32,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub shutdown_timeout: Duration,
    /// Most sends in flight at once (1 to 1024).
    pub max_in_flight: usize,
    /// Send this many events, then end.
    pub count: Option<u64>,
    /// Start no send after this long.
    pub duration: Option<Duration>,
    /// Seed for choosing events; random (and logged) when absent.
    pub seed: Option<u64>,
    pub keys_log: Option<PathBuf>,
}

impl Options {
    /// Options from a checked config section (`Config::check` bounds every number of seconds).
    pub fn from_config(config: &PropagatorConfig) -> Options {
        Options {
            endpoint: config.endpoint.clone(),
            period: Duration::from_secs_f64(config.period_seconds),
            events_file: config.events_file.clone(),
            auth_token: config.auth_token().cloned(),
            max_retries: config.max_retries,
            connect_timeout: Duration::from_secs_f64(config.connect_timeout_seconds),
            request_timeout: Duration::from_secs_f64(config.request_timeout_seconds),
            backoff_initial: Duration::from_secs_f64(config.backoff_initial_seconds),
            backoff_max: Duration::from_secs_f64(config.backoff_max_seconds),
            shutdown_timeout: Duration::from_secs_f64(config.shutdown_timeout_seconds),
            max_in_flight: config.max_in_flight,
            count: None,
            duration: None,
            seed: None,
            keys_log: None,
        }
    }
}

/// Why a run cannot start. Each is a configuration or input error (exit code 2).
#[derive(Debug)]
pub enum SetupError {
    Events(EventsFileError),
    Endpoint {
        endpoint: String,
        problem: String,
    },
    KeysLog {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Events(e) => write!(f, "{e}"),
            SetupError::Endpoint { endpoint, problem } => {
                write!(f, "endpoint `{endpoint}`: {problem}")
            }
            SetupError::KeysLog { path, error } => {
                write!(f, "cannot open keys log {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for SetupError {}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// An event was sent (with retries) and this is how it ended.
    Sent(Sent),
    /// Nothing more will be sent.
    Finished(End),
}

/// One event's send.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub key: String,
    /// Its position in the events file.
    pub event_index: usize,
    pub slot: Slot,
    /// How long after its slot's due time the first attempt went out.
    pub lateness: Duration,
    pub delivery: Delivery,
}

/// A run in progress.
#[derive(Debug)]
pub struct Propagator {
    core: Arc<Core>,
}

/// What every sender thread of a run shares.
#[derive(Debug)]
pub(crate) struct Core {
    options: Options,
    event_types: Vec<String>,
    bodies: Vec<Vec<u8>>,
    sender: Sender,
    seed: u64,
    /// The schedule and all that must follow the order of the slots, held by the thread whose
    /// turn it is, from waiting for the next slot until it has taken it.
    turn: Mutex<Turn>,
    /// Updated by every sender thread; read by the watching thread to abandon sends.
    stats: Mutex<Stats>,
}

#[derive(Debug)]
struct Turn {
    picker: Picker,
    keys_log: Option<KeysLog>,
    /// Created at the first slot: slot 0 is due when the run starts sending, not when it was set up.
    schedule: Option<Schedule>,
    skip_warnings: WarnLimiter,
    end: Option<End>,
}

/// A slot taken: its event picked, its key logged, its send counted; not yet sent.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The send's number in the run (0 for the first).
    number: u64,
    key: String,
    event_index: usize,
    slot: Slot,
    lateness: Duration,
    /// When the slot after it is due.
    pub next_due: Instant,
}

impl Propagator {
    /// Checks the endpoint, the events file and the keys log, and builds the HTTP agent.
    pub fn new(options: Options) -> Result<Propagator, SetupError> {
        check_endpoint(&options.endpoint)?;
        let events = events::load(&options.events_file).map_err(SetupError::Events)?;
        let keys_log = match &options.keys_log {
            Some(path) => Some(KeysLog::open(path).map_err(|error| SetupError::KeysLog {
                path: path.clone(),
                error,
            })?),
            None => None,
        };
        let seed = options.seed.unwrap_or_else(events::random_seed);
        let bodies = events
            .iter()
            .map(|e| serde_json::to_vec(e).expect("an event serialises"))
            .collect();
        let event_types = events.iter().map(|e| e.event_type().to_owned()).collect();
        let sender = Sender::new(
            SenderConfig {
                endpoint: options.endpoint.clone(),
                auth_token: options.auth_token.clone(),
                connect_timeout: options.connect_timeout,
                request_timeout: options.request_timeout,
                max_retries: options.max_retries,
                backoff: Backoff {
                    initial: options.backoff_initial,
                    max: options.backoff_max,
                },
                shutdown_timeout: options.shutdown_timeout,
                max_in_flight: options.max_in_flight,
            },
            // Jitter has its own generator, so retries never change which events are chosen.
            seed ^ 0x9e37_79b9_7f4a_7c15,
        );
        let turn = Turn {
            picker: Picker::new(events.len(), seed),
            keys_log,
            schedule: None,
            skip_warnings: WarnLimiter::new(Duration::from_secs(1)),
            end: None,
        };
        Ok(Propagator {
            core: Arc::new(Core {
                event_types,
                bodies,
                sender,
                seed,
                turn: Mutex::new(turn),
                stats: Mutex::default(),
                options,
            }),
        })
    }

    /// The seed choosing the events (given, or drawn at random).
    pub fn seed(&self) -> u64 {
        self.core.seed
    }

    /// A copy of the counters so far.
    pub fn stats(&self) -> Stats {
        lock(&self.core.stats).clone()
    }

    /// Waits for the next slot, sends one event with its retries on this thread, and says what
    /// happened; or says that the run is over (count reached, duration passed, stop requested).
    /// Each tick is one sender: the next slot waits for this event (as with `max_in_flight: 1`).
    pub fn tick(&mut self, stop: &Stop) -> Tick {
        match self.core.take_slot(stop) {
            Ok(taken) => Tick::Sent(self.core.send(taken, stop)),
            Err(end) => Tick::Finished(end),
        }
    }

    /// Runs until the count, the duration or a stop request ends it, with up to
    /// `max_in_flight` sends in flight, then logs and returns the summary.
    ///
    /// After a stop request this returns within `shutdown_timeout` even if sends hang: those
    /// still unanswered then are counted as abandoned and logged with their keys, and their
    /// threads are left to their request timeouts (the process is about to exit anyway).
    pub fn run_until_stopped(self, stop: &Stop) -> Summary {
        let options = &self.core.options;
        log::info!(
            "sending to {} every {}s, at most {} in flight: {} events from {}, seed {} (replay \
             with --seed {}){}{}",
            redact_userinfo(&options.endpoint),
            options.period.as_secs_f64(),
            options.max_in_flight,
            self.core.bodies.len(),
            options.events_file.display(),
            self.seed(),
            self.seed(),
            options
                .count
                .map(|n| format!(", count {n}"))
                .unwrap_or_default(),
            options
                .duration
                .map(|d| format!(", duration {}s", d.as_secs_f64()))
                .unwrap_or_default(),
        );
        let end = window::run(Arc::clone(&self.core), stop);
        let summary = self.summary_at(end);
        log::info!("summary: {summary}");
        summary
    }

    /// The summary so far, as if the run ended now for `end`.
    pub fn summary_at(&self, end: End) -> Summary {
        let stats = lock(&self.core.stats);
        let elapsed = stats.started().map(|s| s.elapsed()).unwrap_or_default();
        stats.summary(elapsed, end)
    }
}

impl Core {
    /// Waits for the next slot, picks its event, logs its key and counts the send; or says why
    /// the run is over. Slots are taken one at a time, in order, whichever thread takes them,
    /// so the seeded picker and the keys log follow the slots. The caller is a free sender:
    /// slots that passed while every sender was busy are skipped here.
    fn take_slot(&self, stop: &Stop) -> Result<Taken, End> {
        let mut guard = lock(&self.turn);
        let Turn {
            picker,
            keys_log,
            schedule,
            skip_warnings,
            end,
        } = &mut *guard;
        if let Some(ended) = *end {
            return Err(ended);
        }
        let mut finish = |reason: End| {
            *end = Some(reason);
            Err(reason)
        };
        let sent = lock(&self.stats).sent;
        if self.options.count.is_some_and(|n| sent >= n) {
            return finish(End::Count);
        }
        if stop.is_requested() {
            return finish(End::Stopped);
        }
        let now = Instant::now();
        let schedule = schedule.get_or_insert_with(|| Schedule::new(now, self.options.period));
        let start = schedule.start();
        let slot = schedule.next_slot(now);
        if let Some(duration) = self.options.duration {
            if slot.due.max(now) >= start + duration {
                return finish(End::Duration);
            }
        }
        if stop.sleep_until(slot.due) {
            return finish(End::Stopped);
        }

        let event_index = picker.pick();
        let key = uuid::Uuid::new_v4().to_string();
        if let Some(log) = keys_log {
            if let Err(e) = log.append(&key) {
                log::error!(
                    "cannot write keys log {}: {e}; stopping before sending unlogged events",
                    log.path().display()
                );
                return finish(End::KeysLogFailed);
            }
        }
        let sent_at = Instant::now();
        let lateness = sent_at.saturating_duration_since(slot.due);
        let (number, skipped_total, busy) = {
            let mut stats = lock(&self.stats);
            stats.mark_start(start);
            let busy = stats.in_flight();
            let in_flight = InFlight {
                key: key.clone(),
                event_type: self.event_types[event_index].clone(),
                event_index,
            };
            let number = stats.record_send(sent_at, lateness, slot.skipped, in_flight);
            if busy + 1 >= self.options.max_in_flight {
                stats.skipped_window_full += slot.skipped;
            }
            (number, stats.skipped_slots, busy)
        };
        if slot.skipped > 0 {
            if let Some(held_back) = skip_warnings.allow(sent_at) {
                // Whether the window was full tells an operator if a larger one would help.
                let cause = if busy + 1 >= self.options.max_in_flight {
                    "every sender was busy"
                } else {
                    "senders to spare: this process was held up"
                };
                log::warn!(
                    "sending {:.3}s late with {busy} other send(s) in flight, max_in_flight {} \
                     ({cause}): skipped {} slot(s) (total {skipped_total}, {held_back} warnings \
                     held back)",
                    lateness.as_secs_f64(),
                    self.options.max_in_flight,
                    slot.skipped,
                );
            }
        }
        Ok(Taken {
            number,
            key,
            event_index,
            slot,
            lateness,
            next_due: schedule.next_due(sent_at),
        })
    }

    /// Sends a taken slot's event with its retries, on the calling thread, and records how it
    /// ended (unless the run already counted it as abandoned).
    fn send(&self, taken: Taken, stop: &Stop) -> Sent {
        let delivery = self
            .sender
            .deliver(&self.bodies[taken.event_index], &taken.key, stop);
        if lock(&self.stats).record_delivery(taken.number, &delivery) {
            log_outcome(
                &taken.key,
                &self.event_types[taken.event_index],
                taken.event_index,
                &delivery,
            );
        }
        Sent {
            key: taken.key,
            event_index: taken.event_index,
            slot: taken.slot,
            lateness: taken.lateness,
            delivery,
        }
    }

    /// Counts every send still in flight as abandoned and logs each with its key.
    fn abandon_in_flight(&self) {
        let abandoned = lock(&self.stats).abandon_in_flight();
        for (_, event) in abandoned {
            log_abandoned(&event.key, &event.event_type, event.event_index);
        }
    }
}

fn log_outcome(key: &str, event_type: &str, event_index: usize, delivery: &Delivery) {
    let attempts = delivery.attempts;
    match &delivery.outcome {
        Outcome::Delivered | Outcome::Duplicate => {
            log::debug!("event {key} ({event_type}) delivered after {attempts} attempt(s)")
        }
        Outcome::Rejected { status, message } => log::error!(
            "event {key} ({event_type}, entry {event_index}) rejected with {status}: {message}"
        ),
        Outcome::GaveUp { reason } => log::error!(
            "event {key} ({event_type}, entry {event_index}) given up after {attempts} \
             attempt(s): {reason}"
        ),
        Outcome::Abandoned => log_abandoned(key, event_type, event_index),
    }
}

fn log_abandoned(key: &str, event_type: &str, event_index: usize) {
    log::error!(
        "event {key} ({event_type}, entry {event_index}) abandoned at shutdown without an \
         answer: the consumer may or may not have it"
    );
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets up and runs until the count, the duration or a stop request ends it.
pub fn run(options: Options, stop: &Stop) -> Result<Summary, SetupError> {
    Ok(Propagator::new(options)?.run_until_stopped(stop))
}

/// Refuses an endpoint ureq could not use, at start rather than at the first send.
fn check_endpoint(endpoint: &str) -> Result<(), SetupError> {
    let problem = |problem: &str| {
        Err(SetupError::Endpoint {
            endpoint: endpoint.to_owned(),
            problem: problem.to_owned(),
        })
    };
    let uri = match endpoint.parse::<ureq::http::Uri>() {
        Ok(uri) => uri,
        Err(e) => return problem(&format!("not a valid URL: {e}")),
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if cfg!(feature = "tls") => {}
        Some("https") => {
            return problem("https needs the propagator built with `--features tls`");
        }
        _ => return problem("must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return problem("has no host");
    }
    Ok(())
}

/// The endpoint without any `user:password@` part, for logging.
fn redact_userinfo(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return endpoint.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_ureq_cannot_use_are_refused_at_start() {
        assert!(check_endpoint("http://127.0.0.1:8080/event").is_ok());
        for (endpoint, reason) in [
            ("http://", "no host"),
            ("ftp://h/e", "another scheme"),
            ("http://exa mple/e", "a space"),
        ] {
            assert!(check_endpoint(endpoint).is_err(), "{reason}");
        }
        assert_eq!(
            check_endpoint("https://h/e").is_ok(),
            cfg!(feature = "tls"),
            "https only with the tls feature"
        );
    }

    #[test]
    fn credentials_in_the_endpoint_are_not_logged() {
        assert_eq!(
            redact_userinfo("http://u:secret@h:1/e@x"),
            "http://***@h:1/e@x"
        );
        assert_eq!(redact_userinfo("http://h:1/e"), "http://h:1/e");
    }
}
