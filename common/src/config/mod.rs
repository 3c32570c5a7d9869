//! Configuration: `config.yaml` with `${VAR}` / `${VAR:-default}` substitution.
//!
//! Loading is a chain of pure steps, so tests can run each with a map instead of the process
//! environment: read the file ([`Config::load`]), refuse keys that are no longer settings
//! ([`removed`]), [`substitute`] variables through a lookup function, parse into typed sections
//! (unknown keys refused), then [`Config::check`] the values: each section checks itself
//! ([`database`], [`consumer`], [`propagator`]) with the shared rules of [`rules`]. Last,
//! [`Config::check_tls_files`] reads the TLS files the sections name.
//! `.env` is not read here: each binary's `main` loads it first (real environment wins).

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod consumer;
pub mod database;
mod error;
pub mod propagator;
pub mod removed;
pub mod rules;
mod secret;
mod substitute;

pub use consumer::{
    ConsumerConfig, ServerTls, ServerTlsFiles, MAX_DRAIN_SECONDS, MAX_RETENTION_DAYS,
};
pub use database::{
    DatabaseConfig, DbEndpoint, DbPorts, EndpointsError, SslMode, TargetSessionAttrs,
};
pub use error::ConfigError;
pub use propagator::{
    sibling_batch_endpoint, PropagatorConfig, DEFAULT_ENDPOINT, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SPOOL_MAX_BYTES, MAX_BATCH_SIZE, MAX_IN_FLIGHT_LIMIT,
};
pub use removed::REMOVED_KEYS;
pub use rules::Invalid;
pub use secret::Secret;
pub use substitute::{substitute, SubstError};

use removed::find_removed_key;

/// The whole file: one section per part of the system. A missing section takes its defaults.
/// Its `Debug` shows no secret: passwords and tokens are [`Secret`]s.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub consumer: ConsumerConfig,
    pub propagator: PropagatorConfig,
}

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
        self.database.check_tls_files().map_err(tls_error)?;
        self.consumer.check_tls_files().map_err(tls_error)?;
        self.propagator.check_tls_files().map_err(tls_error)
    }

    /// Parses config text; `path` is only used in messages, `lookup` resolves variables.
    pub fn from_yaml(
        text: &str,
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        if let Some((line, key, now)) = find_removed_key(text) {
            return Err(ConfigError::RemovedKey {
                path: path.to_owned(),
                line,
                key,
                now,
            });
        }
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

    /// Checks values that parse but cannot work: each section checks itself, and the first
    /// problem found is the error, naming its key and the file.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        self.database
            .check()
            .and_then(|()| self.consumer.check())
            .and_then(|()| self.propagator.check())
            .map_err(|Invalid { key, problem }| ConfigError::Invalid {
                path: path.to_owned(),
                key,
                problem,
            })
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
