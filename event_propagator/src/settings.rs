//! [`Settings`]: everything a run needs, in one typed value: the `propagator` config section
//! with the command-line flags on top (see [`crate::cli::Args::settings`]), durations as
//! [`Duration`]. Built once; the engine, the window and the sender read the same value through
//! one `Arc`.
//!
//! The endpoints are kept as given here; [`crate::targets`] checks them and derives their
//! batch URLs once, at setup.

use std::path::PathBuf;
use std::time::Duration;

use common::config::PropagatorConfig;
use common::Secret;

use crate::tls::TlsFiles;

/// The settings of a run. Public fields, so tests set what they need on top of the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The consumers, round-robin (at least one; several share one database).
    pub endpoints: Vec<String>,
    pub period: Duration,
    pub events_file: PathBuf,
    pub auth_token: Option<Secret>,
    /// Attempts after the first before an event is given up.
    pub max_retries: u32,
    /// Whole-request cap: connect, send, and read the answer.
    pub request_timeout: Duration,
    /// The longest wait between retries (the backoff's ceiling doubles up to it).
    pub backoff_max: Duration,
    /// After a stop request, how long the sends in flight (with their retries) may still take.
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
    /// Send this many times (requests), then end.
    pub count: Option<u64>,
    /// Start no send after this long.
    pub duration: Option<Duration>,
    /// Seed for choosing events; random (and logged) when absent.
    pub seed: Option<u64>,
    pub keys_log: Option<PathBuf>,
    /// CA file and client certificate for `https://` endpoints.
    pub tls: TlsFiles,
    /// Where events wait until the consumer settles them (see [`crate::spool`]); none: no
    /// spool, and `max_retries` bounds every event.
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold.
    pub spool_max_bytes: u64,
}

impl Settings {
    /// The settings of a checked config section (`Config::check` bounds every number of
    /// seconds), before any flag.
    pub fn from_config(config: &PropagatorConfig) -> Settings {
        Settings {
            endpoints: config.endpoint_list(),
            period: Duration::from_secs_f64(config.period_seconds),
            events_file: config.events_file.clone(),
            auth_token: config.auth_token().cloned(),
            max_retries: config.max_retries,
            request_timeout: Duration::from_secs_f64(config.request_timeout_seconds),
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
            spool_dir: config.spool_dir().map(PathBuf::from),
            spool_max_bytes: config.spool_max_bytes,
        }
    }
}
