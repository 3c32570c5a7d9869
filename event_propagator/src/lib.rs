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
//! This file is the façade ([`Propagator`], [`run`], [`SetupError`]). What a run needs is one
//! [`Settings`] value (`settings.rs`: the config section with the flags on top), shared by
//! the engine, the window and the sender through one `Arc`; its endpoints are resolved once,
//! at setup (`targets.rs`). Taking a slot and sending it is the engine's (`engine/`), the same
//! code whether one tick or a sender thread calls it; [`window`] runs it on threads.
//!
//! With a spool (`spool_dir`, see [`spool`]) every event is durable on disk before its first
//! attempt and retried until the consumer settles it: after `max_retries` its sender hands it
//! to the spool's retry thread (`replay.rs`), which also replays what the spool held at start,
//! beside the schedule; what the end of a run leaves unanswered stays in the spool.
//!
//! What it does not do: without a spool it keeps no queue of unsent events (a stopped
//! propagator simply stops generating); slots that a busy window or a stall left more than
//! 20 ms behind are skipped, not queued; it never fires skipped slots in a burst, and does not
//! read the consumer's database.
#![forbid(unsafe_code)]

mod answer;
pub mod cli;
pub mod endpoints;
mod engine;
pub mod event_set;
pub mod events;
pub mod keys_log;
mod replay;
pub mod schedule;
pub mod sender;
pub mod settings;
pub mod spool;
pub mod stats;
pub mod stop;
pub mod targets;
pub mod tls;
pub mod window;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use common::tls::TlsError;

pub use engine::{Sent, SentEvent};
pub use schedule::Slot;
pub use sender::{Delivery, Outcome};
pub use settings::Settings;
pub use stats::{End, Stats, Summary};
pub use stop::Stop;

use engine::Engine;
use events::EventsFileError;
use keys_log::KeysLog;
use sender::Sender;
use spool::Spool;
use targets::Target;

/// Why a run cannot start. Each is a configuration or input error ([`common::exit::CONFIG`]).
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
    /// The spool directory cannot be used, or another propagator uses it.
    Spool(spool::SpoolError),
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
            SetupError::Spool(e) => write!(f, "{e}"),
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
    pub fn new(settings: Settings) -> Result<Propagator, SetupError> {
        let targets = targets::resolve(&settings)?;
        let tls = settings.tls.load().map_err(SetupError::Tls)?;
        let events = events::load(&settings.events_file).map_err(SetupError::Events)?;
        let mut keys_log = match &settings.keys_log {
            Some(path) => Some(KeysLog::open(path).map_err(|error| SetupError::KeysLog {
                path: path.clone(),
                error,
            })?),
            None => None,
        };
        // With a spool, the spool writes the keys log: a key is logged once its event is durable.
        let spool = match &settings.spool_dir {
            Some(dir) => Some(
                Spool::open(dir, settings.spool_max_bytes, keys_log.take())
                    .map_err(SetupError::Spool)?,
            ),
            None => None,
        };
        let seed = settings.seed.unwrap_or_else(events::random_seed);
        let settings = Arc::new(settings);
        // Jitter has its own generator, so retries never change which events are chosen.
        let sender = Sender::new(
            Arc::clone(&settings),
            targets,
            tls,
            seed ^ 0x9e37_79b9_7f4a_7c15,
        );
        Ok(Propagator {
            engine: Arc::new(Engine::new(settings, sender, events, keys_log, seed, spool)),
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
    /// With a spool, an event whose retries are spent stays in the spool for the next run: the
    /// spool's retry thread runs only under [`Propagator::run_until_stopped`].
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
        let settings = self.engine.settings();
        let urls = |url: fn(&Target) -> Option<&str>| {
            let urls: Vec<&str> = self.engine.targets().iter().filter_map(url).collect();
            urls.join(", ")
        };
        let target = match settings.batch_size {
            1 => format!("to {}", urls(|t| Some(&t.name))),
            n => format!("batches of {n} to {}", urls(|t| t.batch_name.as_deref())),
        };
        log::info!(
            "sending {target}{} every {}s, at most {} in flight: {} events from {}, seed {} \
             (replay with --seed {}){}{}",
            if settings.gzip { " gzipped" } else { "" },
            settings.period.as_secs_f64(),
            settings.max_in_flight,
            self.engine.event_count(),
            settings.events_file.display(),
            self.seed(),
            self.seed(),
            settings
                .count
                .map(|n| format!(", count {n}"))
                .unwrap_or_default(),
            settings
                .duration
                .map(|d| format!(", duration {}s", d.as_secs_f64()))
                .unwrap_or_default(),
        );
        let replay = replay::start(&self.engine, stop);
        let end = window::run(Arc::clone(&self.engine), stop);
        replay.finish(&self.engine, stop);
        let summary = self.summary_at(end);
        if let Some(spool) = self.engine.spool() {
            // What the spool cost: the fsyncs that group commit shared among the events.
            let (events, fsyncs) = spool.writes();
            let seconds = summary.elapsed.as_secs_f64().max(1e-9);
            log::info!(
                "spool {}: spool_events={events} fsyncs={fsyncs} fsyncs_per_s={:.1} \
                 events_per_fsync={:.1}",
                spool.dir().display(),
                fsyncs as f64 / seconds,
                events as f64 / (fsyncs.max(1)) as f64
            );
        }
        log::info!("summary: {summary}");
        summary
    }

    /// The summary so far, as if the run ended now for `end`.
    pub fn summary_at(&self, end: End) -> Summary {
        self.engine.summary_at(end)
    }
}

/// Sets up and runs until the count, the duration or a stop request ends it.
pub fn run(settings: Settings, stop: &Stop) -> Result<Summary, SetupError> {
    Ok(Propagator::new(settings)?.run_until_stopped(stop))
}
