//! The `consumer` section: where the HTTP server listens, what a request may cost, how it
//! stops, and its HTTPS files.
//!
//! Internal tuning (the queue's capacity, the group commit's largest batch, the header count,
//! the write timeout, the body budget) is not here: each is a constant beside the code that uses
//! it in `event_consumer`, since an operator has no reason to change it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rules::{at_least, bearer_token, non_empty, FilePair, Invalid, Seconds, MAX_SECONDS};
use super::Secret;
use crate::tls::TlsError;

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
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub auth_token: Option<Secret>,
    /// Open connections served at once; past it, new connections get a fast 503.
    pub max_connections: usize,
    pub max_header_bytes: usize,
    /// Time allowed to receive a whole request head, and then its whole body.
    pub read_timeout_seconds: f64,
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
    /// Events whose `received_at` is older than this many days are deleted (fractions allowed);
    /// None keeps every event forever. An empty `${RETENTION_DAYS:-}` is YAML's null: None.
    pub retention_days: Option<f64>,
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
            auth_token: None,
            // Each open connection is a thread: 40 to 73 KiB charged to a memory cgroup, up to
            // 101 KiB over HTTPS (docs/capacity.md). 384 of them, the 8 MiB body budget and the
            // rest stay under 48 MiB, a quarter below a 64 MiB container's limit
            // (tests/soak/memory_cgroup.rs).
            max_connections: 384,
            max_header_bytes: 16 * 1024,
            read_timeout_seconds: 10.0,
            idle_timeout_seconds: 30.0,
            shutdown_timeout_seconds: 10.0,
            drain_seconds: 0.0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            retention_days: None,
        }
    }
}

/// Upper bound of `consumer.drain_seconds`: an hour is far beyond any health check's
/// interval × fall, and a stop that hangs longer is a mistake rather than a drain.
pub const MAX_DRAIN_SECONDS: f64 = 3600.0;

/// Longest `consumer.retention_days`: a century is beyond any retention, and keeps the
/// number of seconds far from what a `Duration` cannot hold.
pub const MAX_RETENTION_DAYS: f64 = 36_500.0;

/// Most database connections: each is a PostgreSQL backend, and past a few the batches only
/// shrink (see `workers` above).
const MAX_WORKERS: usize = 256;

/// Smallest `consumer.max_header_bytes`: room for a request line and the usual headers.
const MIN_HEADER_BYTES: usize = 256;

impl ConsumerConfig {
    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), Invalid> {
        Seconds::new("consumer.read_timeout_seconds", self.read_timeout_seconds).positive()?;
        Seconds::new("consumer.idle_timeout_seconds", self.idle_timeout_seconds).positive()?;
        Seconds::new(
            "consumer.shutdown_timeout_seconds",
            self.shutdown_timeout_seconds,
        )
        .up_to(MAX_SECONDS)?;
        Seconds::new("consumer.drain_seconds", self.drain_seconds).up_to(MAX_DRAIN_SECONDS)?;
        at_least("consumer.workers", self.workers, 1)?;
        at_least("consumer.max_body_bytes", self.max_body_bytes, 1)?;
        at_least("consumer.max_connections", self.max_connections, 1)?;
        at_least("consumer.max_batch_events", self.max_batch_events, 1)?;
        at_least("consumer.max_batch_bytes", self.max_batch_bytes, 1)?;
        at_least(
            "consumer.max_header_bytes",
            self.max_header_bytes,
            MIN_HEADER_BYTES,
        )?;
        if let Some(days) = self.retention_days {
            if !(days.is_finite() && days > 0.0 && days <= MAX_RETENTION_DAYS) {
                return Err(Invalid::new(
                    "consumer.retention_days",
                    format!(
                        "must be a number of days above 0 and at most {MAX_RETENTION_DAYS} \
                         (fractions allowed), or absent to keep events forever, got {days}"
                    ),
                ));
            }
        }
        if self.workers > MAX_WORKERS {
            return Err(Invalid::new(
                "consumer.workers",
                format!(
                    "at most {MAX_WORKERS} database connections, got {}",
                    self.workers
                ),
            ));
        }
        let tls = self.tls_pair();
        tls.check()?;
        if non_empty(&self.tls_client_ca_file).is_some() && tls.files().is_none() {
            return Err(Invalid::new(
                "consumer.tls_client_ca_file",
                "client certificates need HTTPS: set consumer.tls_cert_file and \
                 consumer.tls_key_file too",
            ));
        }
        bearer_token("consumer.auth_token", &self.auth_token)
    }

    /// Reads the HTTPS files it names, if any, as the server will at start.
    pub fn check_tls_files(&self) -> Result<(), TlsError> {
        if let Some(tls) = self.tls_files() {
            tls.load()?;
        }
        Ok(())
    }

    /// How long events are kept, when `retention_days` is set ([`ConsumerConfig::check`] has
    /// refused values that are not a positive number of days).
    pub fn retention(&self) -> Option<std::time::Duration> {
        self.retention_days
            .filter(|days| days.is_finite() && *days > 0.0)
            .map(|days| std::time::Duration::from_secs_f64(days.min(MAX_RETENTION_DAYS) * 86_400.0))
    }

    /// The configured token, treating an empty string as "no authentication".
    pub fn auth_token(&self) -> Option<&Secret> {
        self.auth_token.as_ref().filter(|t| !t.is_empty())
    }

    /// The HTTPS files when `tls_cert_file` and `tls_key_file` are set ([`ConsumerConfig::check`]
    /// refuses one without the other), else None: plain HTTP.
    pub fn tls_files(&self) -> Option<ServerTlsFiles> {
        let (cert, key) = self.tls_pair().files()?;
        Some(ServerTlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: non_empty(&self.tls_client_ca_file).map(Path::to_owned),
        })
    }

    fn tls_pair(&self) -> FilePair<'_> {
        FilePair::new(
            "consumer.tls_cert_file",
            &self.tls_cert_file,
            "consumer.tls_key_file",
            &self.tls_key_file,
        )
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
    pub fn load(&self) -> Result<ServerTls, TlsError> {
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

#[cfg(test)]
mod tests;
