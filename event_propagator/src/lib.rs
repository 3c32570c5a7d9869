//! The event propagator: sends randomly chosen events from a JSON file to the consumer on a
//! fixed-rate schedule, retrying each one until the consumer has it, so that no generated event
//! is silently lost (every one ends delivered, or logged as rejected, given up or abandoned) and
//! none is stored twice (each carries an `Idempotency-Key`, the same on every retry).
//!
//! The flow is [`Propagator::new`] (load and check the events, build the HTTP agent), then
//! [`Propagator::tick`] again and again (wait for the next slot, pick, send with retries, say what
//! happened) until it reports the end, then the [`Summary`]. [`Propagator::run_until_stopped`]
//! is that loop, run on a thread of its own so that a send hanging at shutdown cannot hold the
//! process past `shutdown_timeout_seconds`; tests drive single ticks.
//!
//! What it does not do: it keeps no queue of unsent events (a stopped propagator simply stops
//! generating), sends one event at a time (the next slot waits for the current event), and does
//! not read the consumer's database.
#![forbid(unsafe_code)]

pub mod cli;
pub mod events;
pub mod keys_log;
pub mod schedule;
pub mod sender;
pub mod stats;
pub mod stop;

use std::fmt;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
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
    options: Options,
    event_types: Vec<String>,
    bodies: Vec<Vec<u8>>,
    picker: Picker,
    sender: Sender,
    keys_log: Option<KeysLog>,
    /// Created at the first tick: slot 0 is due when the run starts sending, not when it was set up.
    schedule: Option<Schedule>,
    /// Shared with [`Propagator::run_until_stopped`]'s waiting thread, which may have to report
    /// while a send hangs.
    stats: Arc<Mutex<Stats>>,
    skip_warnings: WarnLimiter,
    end: Option<End>,
}

/// How often the thread waiting for a run looks at the stop request.
const RUN_CHECK: Duration = Duration::from_millis(100);

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
            },
            // Jitter has its own generator, so retries never change which events are chosen.
            seed ^ 0x9e37_79b9_7f4a_7c15,
        );
        Ok(Propagator {
            picker: Picker::new(events.len(), seed),
            event_types,
            bodies,
            sender,
            keys_log,
            schedule: None,
            stats: Arc::default(),
            skip_warnings: WarnLimiter::new(Duration::from_secs(1)),
            end: None,
            options,
        })
    }

    /// The seed choosing the events (given, or drawn at random).
    pub fn seed(&self) -> u64 {
        self.picker.seed()
    }

    /// A copy of the counters so far.
    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    /// Waits for the next slot, sends one event with its retries, and says what happened; or
    /// says that the run is over (count reached, duration passed, stop requested).
    pub fn tick(&mut self, stop: &Stop) -> Tick {
        if let Some(end) = self.end {
            return Tick::Finished(end);
        }
        let sent = lock(&self.stats).sent;
        if self.options.count.is_some_and(|n| sent >= n) {
            return self.finish(End::Count);
        }
        if stop.is_requested() {
            return self.finish(End::Stopped);
        }
        let now = Instant::now();
        let schedule = self
            .schedule
            .get_or_insert_with(|| Schedule::new(now, self.options.period));
        let start = schedule.start();
        let slot = schedule.next_slot(now);
        if let Some(duration) = self.options.duration {
            if slot.due.max(now) >= start + duration {
                return self.finish(End::Duration);
            }
        }
        if stop.sleep_until(slot.due) {
            return self.finish(End::Stopped);
        }

        let event_index = self.picker.pick();
        let key = uuid::Uuid::new_v4().to_string();
        if let Some(log) = &mut self.keys_log {
            if let Err(e) = log.append(&key) {
                log::error!(
                    "cannot write keys log {}: {e}; stopping before sending unlogged events",
                    log.path().display()
                );
                return self.finish(End::KeysLogFailed);
            }
        }
        let sent_at = Instant::now();
        let lateness = sent_at.saturating_duration_since(slot.due);
        let skipped_total = {
            let mut stats = lock(&self.stats);
            stats.mark_start(start);
            let in_flight = InFlight {
                key: key.clone(),
                event_type: self.event_types[event_index].clone(),
                event_index,
            };
            stats.record_send(sent_at, lateness, slot.skipped, in_flight);
            stats.skipped_slots
        };
        if slot.skipped > 0 {
            if let Some(held_back) = self.skip_warnings.allow(sent_at) {
                log::warn!(
                    "the previous send overran its slot: skipped {} slot(s) (total {skipped_total}, \
                     {held_back} warnings held back); sending late by {:.3}s",
                    slot.skipped,
                    lateness.as_secs_f64()
                );
            }
        }

        let delivery = self.sender.deliver(&self.bodies[event_index], &key, stop);
        lock(&self.stats).record_delivery(&delivery);
        self.log_outcome(&key, event_index, &delivery);
        Tick::Sent(Sent {
            key,
            event_index,
            slot,
            lateness,
            delivery,
        })
    }

    /// Ticks until the run ends, then logs and returns the summary.
    ///
    /// The ticks run on a thread of their own while this one waits, so that after a stop
    /// request this returns within `shutdown_timeout` even if the request in flight hangs: that
    /// event is then counted as abandoned, and the thread is left to its request timeout (the
    /// process is about to exit anyway).
    pub fn run_until_stopped(self, stop: &Stop) -> Summary {
        log::info!(
            "sending to {} every {}s: {} events from {}, seed {} (replay with --seed {}){}{}",
            redact_userinfo(&self.options.endpoint),
            self.options.period.as_secs_f64(),
            self.bodies.len(),
            self.options.events_file.display(),
            self.seed(),
            self.seed(),
            self.options
                .count
                .map(|n| format!(", count {n}"))
                .unwrap_or_default(),
            self.options
                .duration
                .map(|d| format!(", duration {}s", d.as_secs_f64()))
                .unwrap_or_default(),
        );
        let stats = Arc::clone(&self.stats);
        let shutdown_timeout = self.options.shutdown_timeout;
        // The propagator goes to the thread through a channel, so it is still ours if the thread
        // cannot be started.
        let (hand_over, receive) = mpsc::channel::<Propagator>();
        let (report, finished) = mpsc::channel::<End>();
        let thread_stop = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("sender".into())
            .spawn(move || {
                if let Ok(mut propagator) = receive.recv() {
                    let end = propagator.tick_until_finished(&thread_stop);
                    let _ = report.send(end);
                }
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                log::warn!(
                    "cannot start the sender thread ({e}); sending from this one, so a send that \
                     hangs at shutdown is bounded by request_timeout_seconds instead"
                );
                let mut this = self;
                let end = this.tick_until_finished(stop);
                return this.conclude(end);
            }
        };
        hand_over
            .send(self)
            .expect("the sender thread waits for the propagator");
        let end = loop {
            let wait = match stop.requested_at() {
                None => RUN_CHECK,
                Some(requested) => {
                    let left =
                        (requested + shutdown_timeout).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break abandon(&stats);
                    }
                    left.min(RUN_CHECK)
                }
            };
            match finished.recv_timeout(wait) {
                Ok(done) => {
                    let _ = thread.join();
                    break done;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(()) => unreachable!("the sender thread reports before it ends"),
                },
            }
        };
        let summary = summary_of(&lock(&stats), end);
        log::info!("summary: {summary}");
        summary
    }

    /// The summary so far, as if the run ended now for `end`.
    pub fn summary_at(&self, end: End) -> Summary {
        summary_of(&lock(&self.stats), end)
    }

    fn tick_until_finished(&mut self, stop: &Stop) -> End {
        loop {
            if let Tick::Finished(end) = self.tick(stop) {
                return end;
            }
        }
    }

    fn conclude(&self, end: End) -> Summary {
        let summary = self.summary_at(end);
        log::info!("summary: {summary}");
        summary
    }

    fn finish(&mut self, end: End) -> Tick {
        self.end = Some(end);
        Tick::Finished(end)
    }

    fn log_outcome(&self, key: &str, event_index: usize, delivery: &Delivery) {
        let event_type = &self.event_types[event_index];
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
}

/// The shutdown allowance ran out with the sender thread still busy: count its event as
/// abandoned and report without it.
fn abandon(stats: &Mutex<Stats>) -> End {
    if let Some(event) = lock(stats).abandon_in_flight() {
        log_abandoned(&event.key, &event.event_type, event.event_index);
    }
    End::Stopped
}

fn summary_of(stats: &Stats, end: End) -> Summary {
    let elapsed = stats.started().map(|s| s.elapsed()).unwrap_or_default();
    stats.summary(elapsed, end)
}

fn log_abandoned(key: &str, event_type: &str, event_index: usize) {
    log::error!(
        "event {key} ({event_type}, entry {event_index}) abandoned at shutdown without an \
         answer: the consumer may or may not have it"
    );
}

fn lock(stats: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
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
