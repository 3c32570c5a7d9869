//! The `propagator` section: where events go (one consumer or several), how often, how many
//! at once and in what shape, how failures are retried, and the client side of HTTPS.
//!
//! Internal tuning (the connect timeout, the first retry's backoff) is not here: each is a
//! constant beside the sender in `event_propagator`, since an operator has no reason to
//! change it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rules::{
    bearer_token, count_within, http_url, non_empty, FilePair, Invalid, Seconds, MAX_SECONDS,
};
use super::Secret;
use crate::tls::TlsError;

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
    /// Whole-request cap: connect, send, and read the answer.
    pub request_timeout_seconds: f64,
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
    /// A directory where every event is written (and fsynced) before its first attempt and
    /// kept until the consumer settles it; unset (or empty): no spool.
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool (its segments and `rejected.ndjson`) may hold; when full, new
    /// slots are skipped.
    pub spool_max_bytes: u64,
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
            request_timeout_seconds: 10.0,
            backoff_max_seconds: 5.0,
            shutdown_timeout_seconds: 10.0,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            batch_size: 1,
            batch_endpoint: None,
            gzip: false,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            spool_dir: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

/// Default of `propagator.spool_max_bytes`: 64 MiB holds about 300 000 events of the shipped
/// file's size (about 200 bytes each with their record), over an hour of outage at the fastest
/// rate the benchmark drives one propagator at.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest `propagator.spool_max_bytes`: room for a batch of the largest size.
pub const MIN_SPOOL_MAX_BYTES: u64 = 4096;

/// Where events go when neither `propagator.endpoint` nor `propagator.endpoints` is set.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080/event";

/// Default of `propagator.max_in_flight`: at 1000 sends per second it rides out a consumer
/// stall of about 60 ms (a commit held up by fsync) without skipping a slot, and costs nothing
/// until it is needed (threads start only when every sender is busy). Chosen from 11 pacer
/// runs each (10 000 events at 1 kHz, real consumer, default-durability PostgreSQL, shared
/// 2-core machine): 8 ran out of senders in 4 runs of 6, 32 in 1 of 11 (25 slots skipped), 64
/// in none (at most 36 in flight).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Upper bound of `propagator.max_in_flight`: one thread and one connection each.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1024;
/// Upper bound of `propagator.batch_size`: the consumer's default `max_batch_events`, so a
/// batch the propagator may build is one the consumer takes by default.
pub const MAX_BATCH_SIZE: usize = 1000;

impl PropagatorConfig {
    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), Invalid> {
        Seconds::new(
            "propagator.request_timeout_seconds",
            self.request_timeout_seconds,
        )
        .positive()?;
        Seconds::new("propagator.backoff_max_seconds", self.backoff_max_seconds).positive()?;
        Seconds::new(
            "propagator.shutdown_timeout_seconds",
            self.shutdown_timeout_seconds,
        )
        .up_to(MAX_SECONDS)?;
        Seconds::new("propagator.period_seconds", self.period_seconds).up_to(MAX_SECONDS)?;
        count_within(
            "propagator.max_in_flight",
            self.max_in_flight,
            MAX_IN_FLIGHT_LIMIT,
            "sends",
        )?;
        count_within(
            "propagator.batch_size",
            self.batch_size,
            MAX_BATCH_SIZE,
            "events",
        )?;
        if let Some(url) = self.batch_endpoint() {
            http_url("propagator.batch_endpoint", url)?;
        }
        self.tls_client_pair().check()?;
        if self.spool_max_bytes < MIN_SPOOL_MAX_BYTES {
            return Err(Invalid::new(
                "propagator.spool_max_bytes",
                format!("must be at least {MIN_SPOOL_MAX_BYTES}"),
            ));
        }
        self.check_endpoints()?;
        bearer_token("propagator.auth_token", &self.auth_token)
    }

    /// `endpoint` or `endpoints`, not both; every URL http(s), none twice; one
    /// `batch_endpoint` only for one endpoint.
    fn check_endpoints(&self) -> Result<(), Invalid> {
        if let (Some(_), Some(_)) = (&self.endpoint, &self.endpoints) {
            return Err(Invalid::new(
                "propagator.endpoints",
                "is set and so is propagator.endpoint: list every URL under \
                 propagator.endpoints and remove propagator.endpoint",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            http_url("propagator.endpoint", endpoint)?;
        }
        let Some(endpoints) = &self.endpoints else {
            return Ok(());
        };
        if endpoints.is_empty() {
            return Err(Invalid::new(
                "propagator.endpoints",
                "must list at least one URL",
            ));
        }
        for (i, url) in endpoints.iter().enumerate() {
            http_url("propagator.endpoints", url).map_err(|e| Invalid {
                problem: format!("item {i}: {}", e.problem),
                ..e
            })?;
            if endpoints[..i].contains(url) {
                return Err(Invalid::new(
                    "propagator.endpoints",
                    format!("item {i}: `{url}` is listed twice"),
                ));
            }
        }
        if endpoints.len() > 1 && self.batch_endpoint().is_some() {
            return Err(Invalid::new(
                "propagator.batch_endpoint",
                "names one URL, but propagator.endpoints lists several: remove it, and \
                 each endpoint's batches go to its sibling `events`",
            ));
        }
        Ok(())
    }

    /// Reads the TLS files it names, if any, as the sender will at start.
    pub fn check_tls_files(&self) -> Result<(), TlsError> {
        if let Some(ca) = self.tls_ca_file() {
            crate::tls::read_root_store("propagator.tls_ca_file", ca)?;
        }
        if let Some((cert, key)) = self.tls_client_identity_files() {
            crate::tls::Identity::load(
                "propagator.tls_client_cert_file",
                cert,
                "propagator.tls_client_key_file",
                key,
            )?;
        }
        Ok(())
    }

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

    /// The spool directory, treating an empty path as unset (the shipped config writes
    /// `${VAR:-}`).
    pub fn spool_dir(&self) -> Option<&Path> {
        non_empty(&self.spool_dir)
    }

    /// The client certificate and key files, when both are set ([`PropagatorConfig::check`]
    /// refuses one without the other).
    pub fn tls_client_identity_files(&self) -> Option<(&Path, &Path)> {
        self.tls_client_pair().files()
    }

    fn tls_client_pair(&self) -> FilePair<'_> {
        FilePair::new(
            "propagator.tls_client_cert_file",
            &self.tls_client_cert_file,
            "propagator.tls_client_key_file",
            &self.tls_client_key_file,
        )
    }
}

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

#[cfg(test)]
mod tests;
