//! Configuration: `config.yaml` with `${VAR}` / `${VAR:-default}` substitution.
//!
//! Loading is a chain of pure steps, so tests can run each with a map instead of the process
//! environment: read the file, [`substitute`] variables through a lookup function, parse into
//! typed sections (unknown keys refused), then [`Config::check`] the values.
//! `.env` is not read here: each binary's `main` loads it first (real environment wins).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A value that must never reach logs or debug output: passwords and tokens.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// The whole file: one section per part of the system. A missing section takes its defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub consumer: ConsumerConfig,
    pub propagator: PropagatorConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// One host, or several separated by commas (libpq's `host`), tried in order at every new
    /// connection; see [`DatabaseConfig::endpoints`].
    pub host: String,
    /// One port for every host, or one per host.
    pub port: DbPorts,
    /// Which session a new connection accepts: `read-write` skips standbys.
    pub target_session_attrs: TargetSessionAttrs,
    pub user: String,
    pub password: Secret,
    pub dbname: String,
    /// How long one connection attempt may take.
    pub connect_timeout_seconds: f64,
    /// Server-side cap on any one statement, so no request waits on the database without bound.
    pub statement_timeout_seconds: f64,
    /// TLS to the server, with libpq's meanings.
    pub sslmode: SslMode,
    /// CA certificates (PEM) the server's certificate must chain to; unset or empty: the public
    /// roots bundled into the binary (see `common::tls`).
    pub sslrootcert: Option<PathBuf>,
}

/// `database.sslmode`: libpq's values and meanings (no `allow`: it only differs from `prefer`
/// against a server that insists on TLS, and then `prefer` works too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain text, even when the server offers TLS.
    Disable,
    /// TLS when the server offers it, plain text otherwise; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is set: then,
    /// as with libpq, its chain is, as under `verify-ca`).
    Require,
    /// TLS, and the certificate must chain to a trusted CA; its host name is not checked.
    VerifyCa,
    /// As `verify-ca`, and the certificate must be valid for the host of `database.host` the
    /// connection went to.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            host: "localhost".into(),
            port: DbPorts::from(5432),
            target_session_attrs: TargetSessionAttrs::ReadWrite,
            user: "postgres".into(),
            password: Secret::default(),
            dbname: "events".into(),
            connect_timeout_seconds: 3.0,
            statement_timeout_seconds: 5.0,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    pub host: String,
    pub port: u16,
    /// Database workers, each owning one PostgreSQL connection.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// `POST /events`: most items in one batch, and most bytes of its body (after any gzip
    /// decompression).
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    /// Request bodies buffered at once, summed over all connections; a body that does not fit
    /// waits briefly, then gets 503. At least `max_body_bytes`.
    pub max_buffered_body_bytes: usize,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub auth_token: Option<Secret>,
    /// Open connections served at once; past it, new connections get a fast 503.
    pub max_connections: usize,
    /// Validated events waiting for a database worker; past it, a fast 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction (group commit).
    pub max_batch: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Time allowed to receive a whole request head, and then its whole body.
    pub read_timeout_seconds: f64,
    pub write_timeout_seconds: f64,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout_seconds: f64,
    /// On SIGTERM, how long in-flight requests get to finish.
    pub shutdown_timeout_seconds: f64,
    /// On SIGTERM, how long `/readyz` answers 503 while everything else is still served, so a
    /// load balancer's health checks take the consumer out before it stops accepting.
    pub drain_seconds: f64,
    /// With `tls_key_file`: serve HTTPS only, with this certificate chain (PEM).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// When set, every client must present a certificate that chains to these CAs (PEM).
    pub tls_client_ca_file: Option<PathBuf>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            host: "0.0.0.0".into(),
            port: 8080,
            // Fewer connections mean larger batches, fewer commits and less database CPU per
            // event. `make bench` on 2 cores, 64 clients: 2 stored 1.36-1.42x pgbench's
            // single-row rate, 4 only 0.89-1.10x. More help when commits are slow (an fsync of
            // several ms) and clients few.
            workers: 2,
            max_body_bytes: 64 * 1024,
            max_batch_events: 1000,
            max_batch_bytes: 4 * 1024 * 1024,
            // A small VM's share: 8 MiB of bodies in memory at once, whatever the number of
            // slow uploaders (2,000 of them once took 175 MB). With 2,000 such connections the
            // rest is their threads (12 KiB of stack each) and buffers: 8 MiB keeps the whole
            // process under 48 MB (tests/soak/slow_uploaders.rs).
            max_buffered_body_bytes: 8 * 1024 * 1024,
            auth_token: None,
            max_connections: 2048,
            queue_capacity: 1024,
            max_batch: 256,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            read_timeout_seconds: 10.0,
            write_timeout_seconds: 10.0,
            idle_timeout_seconds: 30.0,
            shutdown_timeout_seconds: 10.0,
            drain_seconds: 0.0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PropagatorConfig {
    /// The one consumer URL; unset: [`DEFAULT_ENDPOINT`], unless `endpoints` is set.
    pub endpoint: Option<String>,
    /// Several consumer URLs (sharing one database), round-robin; instead of `endpoint`.
    pub endpoints: Option<Vec<String>>,
    pub period_seconds: f64,
    pub events_file: PathBuf,
    pub auth_token: Option<Secret>,
    /// Attempts after the first before an event is given up.
    pub max_retries: u32,
    pub connect_timeout_seconds: f64,
    /// Whole-request cap: connect, send, and read the answer.
    pub request_timeout_seconds: f64,
    pub backoff_initial_seconds: f64,
    pub backoff_max_seconds: f64,
    /// On SIGTERM, how long the sends in flight (with their retries) may still take.
    pub shutdown_timeout_seconds: f64,
    /// Most sends in flight at once (each on a sender thread of its own). The schedule waits
    /// only when this many sends are still waiting for their answers.
    pub max_in_flight: usize,
    /// Events per request: 1 POSTs each event alone to `endpoint`; more POST that many, each
    /// with its own key, as one JSON array to the batch endpoint.
    pub batch_size: usize,
    /// Where batches go; unset (or empty): `endpoint` with its last path segment `event`
    /// replaced by `events` (see [`sibling_batch_endpoint`]).
    pub batch_endpoint: Option<String>,
    /// Compress every request body with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// CA certificates (PEM) trusted for `https://` endpoints instead of the bundled roots.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM, with its chain) presented to the consumer, with its key.
    pub tls_client_cert_file: Option<PathBuf>,
    pub tls_client_key_file: Option<PathBuf>,
}

impl Default for PropagatorConfig {
    fn default() -> Self {
        PropagatorConfig {
            endpoint: None,
            endpoints: None,
            period_seconds: 1.0,
            events_file: PathBuf::from("events.json"),
            auth_token: None,
            // 0.1 s doubling to a 5 s cap with full jitter: 20 retries ride out ~45 s of outage.
            max_retries: 20,
            connect_timeout_seconds: 3.0,
            request_timeout_seconds: 10.0,
            backoff_initial_seconds: 0.1,
            backoff_max_seconds: 5.0,
            shutdown_timeout_seconds: 10.0,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            batch_size: 1,
            batch_endpoint: None,
            gzip: false,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
        }
    }
}

/// Where events go when neither `propagator.endpoint` nor `propagator.endpoints` is set.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080/event";

/// Default of `propagator.max_in_flight`: at 1000 sends per second it rides out a consumer
/// stall of about 60 ms (a commit held up by fsync) without skipping a slot, and costs nothing
/// until it is needed (threads start only when every sender is busy). Chosen from 11 pacer
/// runs each (10 000 events at 1 kHz, real consumer, default-durability PostgreSQL, shared
/// 2-core machine): 8 ran out of senders in 4 runs of 6, 32 in 1 of 11 (25 slots skipped), 64
/// in none (at most 36 in flight).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Upper bound of `consumer.drain_seconds`: an hour is far beyond any health check's
/// interval × fall, and a stop that hangs longer is a mistake rather than a drain.
pub const MAX_DRAIN_SECONDS: f64 = 3600.0;
/// Upper bound of `propagator.max_in_flight`: one thread and one connection each.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1024;
/// Upper bound of `propagator.batch_size`: the consumer's default `max_batch_events`, so a
/// batch the propagator may build is one the consumer takes by default.
pub const MAX_BATCH_SIZE: usize = 1000;

/// The batch endpoint next to a `POST /event` endpoint: its last path segment `event` replaced
/// by `events` (`http://h:8080/event` → `http://h:8080/events`). A query string is kept
/// (`/event?tenant=a` → `/events?tenant=a`), since a proxy in front may route on it; a
/// fragment is never sent and is dropped. An endpoint whose last segment is anything else
/// (`/ingest`, `/event/`, no path at all) has no sibling: the error says what it found, and
/// `propagator.batch_endpoint` must name the URL instead.
pub fn sibling_batch_endpoint(endpoint: &str) -> Result<String, String> {
    let without_fragment = endpoint.split('#').next().unwrap_or(endpoint);
    let (base, query) = match without_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (without_fragment, None),
    };
    let path_start = base
        .find("://")
        .and_then(|scheme_end| base[scheme_end + 3..].find('/').map(|p| scheme_end + 3 + p));
    let last_segment = path_start.map(|start| {
        let slash = base.rfind('/').unwrap_or(start);
        &base[slash + 1..]
    });
    match last_segment {
        Some("event") => {
            let mut sibling = format!("{base}s");
            if let Some(query) = query {
                sibling.push('?');
                sibling.push_str(query);
            }
            Ok(sibling)
        }
        Some(other) => Err(format!(
            "batches need the batch endpoint: the endpoint's last path segment is `{other}`, not \
             `event`, so there is no sibling `events` to derive; set propagator.batch_endpoint \
             (or --batch-endpoint)"
        )),
        None => Err(
            "batches need the batch endpoint: the endpoint has no path ending in \
                     `/event` to derive it from; set propagator.batch_endpoint (or \
                     --batch-endpoint)"
                .to_owned(),
        ),
    }
}

/// Why the configuration cannot be used. Every message names the file and what to fix.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    MissingVariable {
        path: PathBuf,
        line: usize,
        key: String,
        variable: String,
    },
    BadSubstitution {
        path: PathBuf,
        line: usize,
        text: String,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    /// A TLS file the configuration names cannot be used.
    Tls {
        path: PathBuf,
        error: crate::tls::TlsError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::MissingVariable { path, line, key, variable } => write!(
                f,
                "{}:{line}: {key}: environment variable {variable} is not set and has no default \
                 (set it, add it to .env, or write ${{{variable}:-default}})",
                path.display()
            ),
            ConfigError::BadSubstitution { path, line, text } => write!(
                f,
                "{}:{line}: malformed variable reference `{text}` (write ${{NAME}} or ${{NAME:-default}})",
                path.display()
            ),
            ConfigError::Parse { path, message } => write!(f, "{}: {message}", path.display()),
            ConfigError::Invalid { path, key, problem } => {
                write!(f, "{}: {key}: {problem}", path.display())
            }
            ConfigError::Tls { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Largest config file read: the shipped one is about 2 KiB; a limit keeps `/dev/zero` or a
/// runaway file from filling memory.
pub const CONFIG_MAX_BYTES: u64 = 1024 * 1024;

/// The file read when no `--config` is given, in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.yaml";

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No `--config` and no `config.yaml` in the working directory: the built-in defaults.
    Defaults,
}

impl Config {
    /// The configuration a binary runs on: `explicit` (`--config PATH`) when given, which must
    /// be readable; otherwise [`DEFAULT_CONFIG_FILE`] when it exists (anything by that name,
    /// a dangling link included, is read and its errors reported); otherwise the defaults,
    /// which every key has, so flags alone can drive a run.
    pub fn load_chosen(explicit: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
        let path = match explicit {
            Some(path) => path,
            None => {
                let default = Path::new(DEFAULT_CONFIG_FILE);
                if default.symlink_metadata().is_err() {
                    return Ok((Config::default(), ConfigSource::Defaults));
                }
                default
            }
        };
        Ok((Config::load(path)?, ConfigSource::File(path.to_owned())))
    }

    /// Reads, substitutes from the process environment, parses and checks `path`: a regular
    /// file of at most [`CONFIG_MAX_BYTES`], UTF-8, a leading byte order mark ignored. Then
    /// reads the TLS files it names ([`Config::check_tls_files`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |error| ConfigError::Read {
            path: path.to_owned(),
            error,
        };
        let bytes = crate::file::read_limited(path, CONFIG_MAX_BYTES).map_err(read_error)?;
        let text = std::str::from_utf8(crate::file::strip_bom(&bytes)).map_err(|e| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            ))
        })?;
        let config = Config::from_yaml(text, path, |name| std::env::var(name).ok())?;
        config.check_tls_files(path)?;
        Ok(config)
    }

    /// Reads every TLS file the configuration names and checks it as its user will (a CA file
    /// holds usable CA certificates, a key matches its certificate), so a bad file stops the
    /// program at start (exit code 2) instead of failing every connection. Both binaries check
    /// the whole file, as they check every other value.
    pub fn check_tls_files(&self, path: &Path) -> Result<(), ConfigError> {
        let tls_error = |error| ConfigError::Tls {
            path: path.to_owned(),
            error,
        };
        if let Some(ca) = self.database.sslrootcert() {
            crate::tls::read_root_store("database.sslrootcert", ca).map_err(tls_error)?;
        }
        if let Some(tls) = self.consumer.tls_files() {
            tls.load().map_err(tls_error)?;
        }
        let p = &self.propagator;
        if let Some(ca) = p.tls_ca_file() {
            crate::tls::read_root_store("propagator.tls_ca_file", ca).map_err(tls_error)?;
        }
        if let Some((cert, key)) = p.tls_client_identity_files() {
            crate::tls::Identity::load(
                "propagator.tls_client_cert_file",
                cert,
                "propagator.tls_client_key_file",
                key,
            )
            .map_err(tls_error)?;
        }
        Ok(())
    }

    /// Parses config text; `path` is only used in messages, `lookup` resolves variables.
    pub fn from_yaml(
        text: &str,
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let substituted = substitute(text, lookup).map_err(|e| e.into_config_error(path))?;
        // An empty file (or one holding only comments) is an empty mapping, not an error.
        let config: Config = if substituted.trim().is_empty()
            || substituted
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            Config::default()
        } else {
            serde_norway::from_str(&substituted).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: one_line(&e.to_string()),
            })?
        };
        config.check(path)?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, problem: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                problem,
            })
        };
        let positive_seconds: [(&'static str, f64); 9] = [
            (
                "database.connect_timeout_seconds",
                self.database.connect_timeout_seconds,
            ),
            (
                "database.statement_timeout_seconds",
                self.database.statement_timeout_seconds,
            ),
            (
                "consumer.read_timeout_seconds",
                self.consumer.read_timeout_seconds,
            ),
            (
                "consumer.write_timeout_seconds",
                self.consumer.write_timeout_seconds,
            ),
            (
                "consumer.idle_timeout_seconds",
                self.consumer.idle_timeout_seconds,
            ),
            (
                "propagator.connect_timeout_seconds",
                self.propagator.connect_timeout_seconds,
            ),
            (
                "propagator.request_timeout_seconds",
                self.propagator.request_timeout_seconds,
            ),
            (
                "propagator.backoff_initial_seconds",
                self.propagator.backoff_initial_seconds,
            ),
            (
                "propagator.backoff_max_seconds",
                self.propagator.backoff_max_seconds,
            ),
        ];
        if let Err(e) = self.database.endpoints() {
            return invalid(e.key, e.problem);
        }
        for (key, value) in positive_seconds {
            if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
                return invalid(
                    key,
                    format!("must be a number of seconds above 0 and at most 86400, got {value}"),
                );
            }
        }
        let non_negative_seconds: [(&'static str, f64); 3] = [
            (
                "consumer.shutdown_timeout_seconds",
                self.consumer.shutdown_timeout_seconds,
            ),
            (
                "propagator.shutdown_timeout_seconds",
                self.propagator.shutdown_timeout_seconds,
            ),
            ("propagator.period_seconds", self.propagator.period_seconds),
        ];
        for (key, value) in non_negative_seconds {
            if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
                return invalid(
                    key,
                    format!("must be a number of seconds from 0 to 86400, got {value}"),
                );
            }
        }
        let drain = self.consumer.drain_seconds;
        if !(drain.is_finite() && (0.0..=MAX_DRAIN_SECONDS).contains(&drain)) {
            return invalid(
                "consumer.drain_seconds",
                format!("must be a number of seconds from 0 to {MAX_DRAIN_SECONDS}, got {drain}"),
            );
        }
        let at_least_one: [(&'static str, usize); 9] = [
            ("consumer.workers", self.consumer.workers),
            ("consumer.max_body_bytes", self.consumer.max_body_bytes),
            ("consumer.max_connections", self.consumer.max_connections),
            ("consumer.queue_capacity", self.consumer.queue_capacity),
            ("consumer.max_batch", self.consumer.max_batch),
            ("consumer.max_batch_events", self.consumer.max_batch_events),
            ("consumer.max_batch_bytes", self.consumer.max_batch_bytes),
            ("consumer.max_header_bytes", self.consumer.max_header_bytes),
            ("consumer.max_headers", self.consumer.max_headers),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        if self.consumer.workers > 256 {
            return invalid(
                "consumer.workers",
                format!(
                    "at most 256 database connections, got {}",
                    self.consumer.workers
                ),
            );
        }
        if self.consumer.max_header_bytes < 256 {
            return invalid("consumer.max_header_bytes", "must be at least 256".into());
        }
        if self.consumer.max_buffered_body_bytes < self.consumer.max_body_bytes {
            return invalid(
                "consumer.max_buffered_body_bytes",
                format!(
                    "must be at least consumer.max_body_bytes ({}), or a body within the limit \
                     could never be read; got {}",
                    self.consumer.max_body_bytes, self.consumer.max_buffered_body_bytes
                ),
            );
        }
        if self.consumer.max_buffered_body_bytes < self.consumer.max_batch_bytes {
            return invalid(
                "consumer.max_buffered_body_bytes",
                format!(
                    "must be at least consumer.max_batch_bytes ({}), or a batch within the \
                     limit could never be read; got {}",
                    self.consumer.max_batch_bytes, self.consumer.max_buffered_body_bytes
                ),
            );
        }
        let max_in_flight = self.propagator.max_in_flight;
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&max_in_flight) {
            return invalid(
                "propagator.max_in_flight",
                format!(
                    "must be a whole number of sends from 1 to {MAX_IN_FLIGHT_LIMIT}, got {max_in_flight}"
                ),
            );
        }
        let batch_size = self.propagator.batch_size;
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return invalid(
                "propagator.batch_size",
                format!(
                    "must be a whole number of events from 1 to {MAX_BATCH_SIZE}, got {batch_size}"
                ),
            );
        }
        if let Some(url) = self.propagator.batch_endpoint() {
            if !is_http_url(url) {
                return invalid(
                    "propagator.batch_endpoint",
                    format!("must be an http:// or https:// URL, got `{url}`"),
                );
            }
        }
        let (cert, key) = ("consumer.tls_cert_file", "consumer.tls_key_file");
        let c = &self.consumer;
        match (non_empty(&c.tls_cert_file), non_empty(&c.tls_key_file)) {
            (Some(_), None) => {
                return invalid(
                    cert,
                    format!("is set but {key} is not: set both or neither"),
                )
            }
            (None, Some(_)) => {
                return invalid(
                    key,
                    format!("is set but {cert} is not: set both or neither"),
                )
            }
            _ => {}
        }
        if non_empty(&c.tls_client_ca_file).is_some() && non_empty(&c.tls_cert_file).is_none() {
            return invalid(
                "consumer.tls_client_ca_file",
                format!("client certificates need HTTPS: set {cert} and {key} too"),
            );
        }
        let cert = "propagator.tls_client_cert_file";
        let key = "propagator.tls_client_key_file";
        match (
            non_empty(&self.propagator.tls_client_cert_file),
            non_empty(&self.propagator.tls_client_key_file),
        ) {
            (Some(_), None) => {
                return invalid(
                    cert,
                    format!("is set but {key} is not: set both or neither"),
                )
            }
            (None, Some(_)) => {
                return invalid(
                    key,
                    format!("is set but {cert} is not: set both or neither"),
                )
            }
            _ => {}
        }
        let p = &self.propagator;
        if let (Some(_), Some(_)) = (&p.endpoint, &p.endpoints) {
            return invalid(
                "propagator.endpoints",
                "is set and so is propagator.endpoint: list every URL under \
                 propagator.endpoints and remove propagator.endpoint"
                    .into(),
            );
        }
        if let Some(endpoint) = &p.endpoint {
            if !is_http_url(endpoint) {
                return invalid(
                    "propagator.endpoint",
                    format!("must be an http:// or https:// URL, got `{endpoint}`"),
                );
            }
        }
        if let Some(endpoints) = &p.endpoints {
            if endpoints.is_empty() {
                return invalid("propagator.endpoints", "must list at least one URL".into());
            }
            for (i, url) in endpoints.iter().enumerate() {
                if !is_http_url(url) {
                    return invalid(
                        "propagator.endpoints",
                        format!("item {i}: must be an http:// or https:// URL, got `{url}`"),
                    );
                }
                if endpoints[..i].contains(url) {
                    return invalid(
                        "propagator.endpoints",
                        format!("item {i}: `{url}` is listed twice"),
                    );
                }
            }
            if endpoints.len() > 1 && p.batch_endpoint().is_some() {
                return invalid(
                    "propagator.batch_endpoint",
                    "names one URL, but propagator.endpoints lists several: remove it, and \
                     each endpoint's batches go to its sibling `events`"
                        .into(),
                );
            }
        }
        for (key, token) in [
            ("consumer.auth_token", &self.consumer.auth_token),
            ("propagator.auth_token", &self.propagator.auth_token),
        ] {
            if let Some(token) = token {
                let ok = token.expose().bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return invalid(key, "must be printable ASCII without spaces".into());
                }
            }
        }
        Ok(())
    }
}

impl ConsumerConfig {
    /// The configured token, treating an empty string as "no authentication".
    pub fn auth_token(&self) -> Option<&Secret> {
        self.auth_token.as_ref().filter(|t| !t.is_empty())
    }
}

impl PropagatorConfig {
    /// The consumer URLs: `endpoints`, or else `endpoint`, or else [`DEFAULT_ENDPOINT`].
    pub fn endpoint_list(&self) -> Vec<String> {
        match (&self.endpoints, &self.endpoint) {
            (Some(endpoints), _) => endpoints.clone(),
            (None, Some(endpoint)) => vec![endpoint.clone()],
            (None, None) => vec![DEFAULT_ENDPOINT.to_owned()],
        }
    }

    pub fn auth_token(&self) -> Option<&Secret> {
        self.auth_token.as_ref().filter(|t| !t.is_empty())
    }

    /// The batch endpoint, treating an empty string as unset (the shipped config writes
    /// `${VAR:-}`).
    pub fn batch_endpoint(&self) -> Option<&str> {
        self.batch_endpoint.as_deref().filter(|u| !u.is_empty())
    }

    /// The CA file, treating an empty path as unset (the shipped config writes `${VAR:-}`).
    pub fn tls_ca_file(&self) -> Option<&Path> {
        non_empty(&self.tls_ca_file)
    }

    /// The client certificate and key files, when both are set (`Config::check` refuses one
    /// without the other).
    pub fn tls_client_identity_files(&self) -> Option<(&Path, &Path)> {
        Some((
            non_empty(&self.tls_client_cert_file)?,
            non_empty(&self.tls_client_key_file)?,
        ))
    }
}

/// The consumer's HTTPS files, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// What the consumer's HTTPS files hold, read and checked.
#[derive(Debug)]
pub struct ServerTls {
    pub identity: crate::tls::Identity,
    /// The CAs client certificates must chain to (mutual TLS), when set.
    pub client_roots: Option<rustls::RootCertStore>,
}

impl ServerTlsFiles {
    /// Reads the files now (at start, and again at each reload): a missing or unreadable
    /// file, a PEM without a certificate, a key that does not match are errors naming the key.
    pub fn load(&self) -> Result<ServerTls, crate::tls::TlsError> {
        let identity = crate::tls::Identity::load(
            "consumer.tls_cert_file",
            &self.cert,
            "consumer.tls_key_file",
            &self.key,
        )?;
        let client_roots = match &self.client_ca {
            Some(ca) => Some(crate::tls::read_root_store(
                "consumer.tls_client_ca_file",
                ca,
            )?),
            None => None,
        };
        Ok(ServerTls {
            identity,
            client_roots,
        })
    }
}

impl ConsumerConfig {
    /// The HTTPS files when `tls_cert_file` and `tls_key_file` are set (`Config::check` refuses
    /// one without the other), else None: plain HTTP.
    pub fn tls_files(&self) -> Option<ServerTlsFiles> {
        Some(ServerTlsFiles {
            cert: non_empty(&self.tls_cert_file)?.to_owned(),
            key: non_empty(&self.tls_key_file)?.to_owned(),
            client_ca: non_empty(&self.tls_client_ca_file).map(Path::to_owned),
        })
    }
}

impl DatabaseConfig {
    /// The root certificate file, treating an empty path as unset.
    pub fn sslrootcert(&self) -> Option<&Path> {
        non_empty(&self.sslrootcert)
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// An optional path, with an empty one (an unset `${VAR:-}`) taken as absent.
fn non_empty(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[path = "config_db_hosts.rs"]
mod db_hosts;
pub use db_hosts::{DbEndpoint, DbPorts, EndpointsError, TargetSessionAttrs};

#[path = "config_substitute.rs"]
mod substitute;
pub use substitute::{substitute, SubstError};

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
