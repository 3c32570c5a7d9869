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
//! With `batch_size` above 1 each slot is one request of that many events (`POST /events`,
//! each item with its own key), retried whole; with `gzip` every body is compressed.
//!
//! This file is the façade (options, [`Propagator`], [`run`]). Taking a slot and sending it is
//! the engine's (`engine.rs`), the same code whether one tick or a sender thread calls it;
//! [`window`] runs it on threads.
//!
//! What it does not do: it keeps no queue of unsent events (a stopped propagator simply stops
//! generating; slots that a busy window or a stall left more than 20 ms behind are skipped, not
//! queued), never fires skipped slots in a burst, and does not read the consumer's database.
#![forbid(unsafe_code)]

mod answer;
pub mod cli;
pub mod endpoints;
mod engine;
pub mod event_set;
pub mod events;
pub mod keys_log;
pub mod schedule;
pub mod sender;
pub mod stats;
pub mod stop;
pub mod tls;
pub mod window;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::config::PropagatorConfig;
use common::tls::TlsError;
use common::Secret;

pub use engine::{Sent, SentEvent};
pub use schedule::Slot;
pub use sender::{Delivery, Outcome};
pub use stats::{End, Stats, Summary};
pub use stop::Stop;

use engine::Engine;
use events::EventsFileError;
use keys_log::KeysLog;
use sender::Target;
use tls::TlsFiles;

/// Everything a run needs: the `propagator` config section with the command-line overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The consumers, round-robin (at least one; several share one database).
    pub endpoints: Vec<String>,
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
    /// Events per request (1 to 1000): above 1, each slot POSTs that many as one batch.
    pub batch_size: usize,
    /// Where batches go (with one endpoint only); `None`: the sibling `events` of each
    /// endpoint, derived at start.
    pub batch_endpoint: Option<String>,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Send this many events, then end.
    pub count: Option<u64>,
    /// Start no send after this long.
    pub duration: Option<Duration>,
    /// Seed for choosing events; random (and logged) when absent.
    pub seed: Option<u64>,
    pub keys_log: Option<PathBuf>,
    /// CA file and client certificate for `https://` endpoints.
    pub tls: TlsFiles,
}

impl Options {
    /// Options from a checked config section (`Config::check` bounds every number of seconds).
    pub fn from_config(config: &PropagatorConfig) -> Options {
        Options {
            endpoints: config.endpoint_list(),
            period: Duration::from_secs_f64(config.period_seconds),
            events_file: config.events_file.clone(),
            auth_token: config.auth_token().cloned(),
            max_retries: config.max_retries,
            connect_timeout: sender::CONNECT_TIMEOUT,
            request_timeout: Duration::from_secs_f64(config.request_timeout_seconds),
            backoff_initial: sender::BACKOFF_INITIAL,
            backoff_max: Duration::from_secs_f64(config.backoff_max_seconds),
            shutdown_timeout: Duration::from_secs_f64(config.shutdown_timeout_seconds),
            max_in_flight: config.max_in_flight,
            batch_size: config.batch_size,
            batch_endpoint: config.batch_endpoint().map(str::to_owned),
            gzip: config.gzip,
            count: None,
            duration: None,
            seed: None,
            keys_log: None,
            tls: TlsFiles {
                ca_file: config.tls_ca_file().map(PathBuf::from),
                client_identity: config
                    .tls_client_identity_files()
                    .map(|(cert, key)| (cert.to_owned(), key.to_owned())),
            },
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
    /// A CA or client certificate file that cannot be used.
    Tls(TlsError),
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
            SetupError::Tls(e) => write!(f, "{e}"),
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

/// A run in progress.
#[derive(Debug)]
pub struct Propagator {
    engine: Arc<Engine>,
}

impl Propagator {
    /// Checks the endpoint, the TLS files, the events file and the keys log, and builds the
    /// HTTP agent.
    pub fn new(options: Options) -> Result<Propagator, SetupError> {
        let targets = targets(&options)?;
        let tls = options.tls.load().map_err(SetupError::Tls)?;
        let events = events::load(&options.events_file).map_err(SetupError::Events)?;
        let keys_log = match &options.keys_log {
            Some(path) => Some(KeysLog::open(path).map_err(|error| SetupError::KeysLog {
                path: path.clone(),
                error,
            })?),
            None => None,
        };
        let seed = options.seed.unwrap_or_else(events::random_seed);
        Ok(Propagator {
            engine: Arc::new(Engine::new(options, targets, tls, events, keys_log, seed)),
        })
    }

    /// The seed choosing the events (given, or drawn at random).
    pub fn seed(&self) -> u64 {
        self.engine.seed()
    }

    /// A copy of the counters so far.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Waits for the next slot, sends one event with its retries on this thread, and says what
    /// happened; or says that the run is over (count reached, duration passed, stop requested).
    /// Each tick is one sender: the next slot waits for this event (as with `max_in_flight: 1`).
    pub fn tick(&mut self, stop: &Stop) -> Tick {
        match self.engine.take_slot(stop) {
            Ok(taken) => Tick::Sent(self.engine.send(taken, stop)),
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
        let options = self.engine.options();
        let urls = |url: fn(&Target) -> Option<&str>| {
            let urls: Vec<&str> = self.engine.targets().iter().filter_map(url).collect();
            urls.join(", ")
        };
        let target = match options.batch_size {
            1 => format!("to {}", urls(|t| Some(&t.name))),
            n => format!("batches of {n} to {}", urls(|t| t.batch_name.as_deref())),
        };
        log::info!(
            "sending {target}{} every {}s, at most {} in flight: {} events from {}, seed {} \
             (replay with --seed {}){}{}",
            if options.gzip { " gzipped" } else { "" },
            options.period.as_secs_f64(),
            options.max_in_flight,
            self.engine.event_count(),
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
        let end = window::run(Arc::clone(&self.engine), stop);
        let summary = self.summary_at(end);
        log::info!("summary: {summary}");
        summary
    }

    /// The summary so far, as if the run ended now for `end`.
    pub fn summary_at(&self, end: End) -> Summary {
        self.engine.summary_at(end)
    }
}

/// Sets up and runs until the count, the duration or a stop request ends it.
pub fn run(options: Options, stop: &Stop) -> Result<Summary, SetupError> {
    Ok(Propagator::new(options)?.run_until_stopped(stop))
}

/// Each endpoint checked, with where its batches go when batches are sent, and its name for
/// logs. Several endpoints (from `--endpoint` flags, which the config check did not see) must
/// differ, and take their batch URLs from their own paths.
fn targets(options: &Options) -> Result<Vec<Target>, SetupError> {
    let several = options.endpoints.len() > 1;
    if options.endpoints.is_empty() {
        return Err(SetupError::Endpoint {
            endpoint: String::new(),
            problem: "no endpoint: set propagator.endpoint(s) or --endpoint".into(),
        });
    }
    let mut targets: Vec<Target> = Vec::with_capacity(options.endpoints.len());
    for endpoint in &options.endpoints {
        check_endpoint(endpoint)?;
        let name = redact_userinfo(endpoint);
        if targets.iter().any(|t| t.name == name) {
            return Err(SetupError::Endpoint {
                endpoint: name,
                problem: "is listed twice".into(),
            });
        }
        let batch_url = match (options.batch_size, &options.batch_endpoint) {
            (1, _) => None,
            (_, Some(_)) if several => {
                return Err(SetupError::Endpoint {
                    endpoint: name,
                    problem: "with several endpoints batches go to each one's sibling \
                              `events`: remove propagator.batch_endpoint (or --batch-endpoint)"
                        .into(),
                })
            }
            (_, Some(url)) => Some(url.clone()),
            (_, None) => Some(common::config::sibling_batch_endpoint(endpoint).map_err(
                |problem| SetupError::Endpoint {
                    endpoint: name.clone(),
                    problem,
                },
            )?),
        };
        if let Some(url) = &batch_url {
            check_endpoint(url)?;
        }
        targets.push(Target {
            event_url: endpoint.clone(),
            batch_name: batch_url.as_deref().map(redact_userinfo),
            batch_url,
            name,
        });
    }
    Ok(targets)
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
        Some("http" | "https") => {}
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
        assert!(check_endpoint("https://consumer.example:8443/event").is_ok());
        for (endpoint, reason) in [
            ("http://", "no host"),
            ("ftp://h/e", "another scheme"),
            ("http://exa mple/e", "a space"),
        ] {
            assert!(check_endpoint(endpoint).is_err(), "{reason}");
        }
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
