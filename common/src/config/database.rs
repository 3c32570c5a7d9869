//! The `database` section: where PostgreSQL is and how to reach it. `database.host` is one
//! host or a comma-separated list, `database.port` one port for every host or one per host,
//! `database.target_session_attrs` which session is good enough; the hosts are tried in order
//! at every new connection, as libpq does. TLS with libpq's `sslmode` and `sslrootcert`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::rules::{non_empty, Invalid, Seconds};
use super::Secret;
use crate::tls::TlsError;

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

impl DatabaseConfig {
    /// Checks values that parse but cannot work: hosts and ports that do not pair up, timeouts.
    pub fn check(&self) -> Result<(), Invalid> {
        self.endpoints()
            .map_err(|e| Invalid::new(e.key, e.problem))?;
        Seconds::new(
            "database.connect_timeout_seconds",
            self.connect_timeout_seconds,
        )
        .positive()?;
        Seconds::new(
            "database.statement_timeout_seconds",
            self.statement_timeout_seconds,
        )
        .positive()
    }

    /// Reads the CA file it names, if any, as a connection will.
    pub fn check_tls_files(&self) -> Result<(), TlsError> {
        if let Some(ca) = self.sslrootcert() {
            crate::tls::read_root_store("database.sslrootcert", ca)?;
        }
        Ok(())
    }

    /// The root certificate file, treating an empty path as unset.
    pub fn sslrootcert(&self) -> Option<&Path> {
        non_empty(&self.sslrootcert)
    }
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

/// `database.port`: one port for every host, or one per host of `database.host`. YAML gives a
/// number, a list (of numbers or strings), or a string: `5432,5433` is a string in YAML, and
/// `${DB_PORT}` always substitutes to text.
#[derive(Clone, PartialEq, Eq)]
pub struct DbPorts(Vec<u16>);

impl DbPorts {
    /// The ports as given; `None` when empty (there must be at least one).
    pub fn new(ports: Vec<u16>) -> Option<DbPorts> {
        (!ports.is_empty() && !ports.contains(&0)).then_some(DbPorts(ports))
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.0
    }
}

impl From<u16> for DbPorts {
    fn from(port: u16) -> DbPorts {
        DbPorts(vec![port])
    }
}

/// One port equals `port`: lets `config.database.port == 5432` read as it did with one port.
impl PartialEq<u16> for DbPorts {
    fn eq(&self, port: &u16) -> bool {
        self.0 == [*port]
    }
}

/// As written in the file: `5432` or `5432,5433`.
impl fmt::Display for DbPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, port) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{port}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DbPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A port of the list from its text: digits only, 1 to 65535.
fn parse_port(text: &str) -> Result<u16, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty port in the list".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a port number"));
    }
    text.parse::<u64>()
        .ok()
        .and_then(|n| port_in_range(n).ok())
        .ok_or_else(|| format!("port {text} is out of range (1 to 65535)"))
}

fn port_in_range(n: u64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("port {n} is out of range (1 to 65535)")),
    }
}

impl<'de> Deserialize<'de> for DbPorts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DbPorts, D::Error> {
        deserializer.deserialize_any(PortsVisitor)
    }
}

struct PortsVisitor;

impl<'de> Visitor<'de> for PortsVisitor {
    type Value = DbPorts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port (1 to 65535), a list of ports, or ports separated by commas")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<DbPorts, E> {
        port_in_range(n).map(DbPorts::from).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<DbPorts, E> {
        let n = u64::try_from(n)
            .map_err(|_| E::custom(format!("port {n} is out of range (1 to 65535)")))?;
        self.visit_u64(n)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DbPorts, E> {
        let ports = text
            .split(',')
            .map(parse_port)
            .collect::<Result<Vec<u16>, String>>()
            .map_err(|problem| match text.contains(',') {
                true => E::custom(format!("{problem} in `{text}`")),
                false => E::custom(problem),
            })?;
        Ok(DbPorts(ports))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DbPorts, A::Error> {
        let mut ports = Vec::new();
        while let Some(item) = seq.next_element::<DbPorts>()? {
            ports.extend(item.0);
        }
        DbPorts::new(ports).ok_or_else(|| de::Error::custom("an empty list of ports"))
    }
}

/// `database.target_session_attrs`, libpq's: which session a new connection accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetSessionAttrs {
    /// The first host that accepts a connection, even a read-only standby (whose writes then
    /// fail: the consumer answers 503 and keeps trying).
    Any,
    /// The first host whose session accepts writes: standbys and servers with
    /// `default_transaction_read_only` are skipped.
    #[default]
    ReadWrite,
}

impl TargetSessionAttrs {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host of `database.host` with its port: `db1:5432`. A host starting with `/` is the
/// directory of a Unix socket, as with libpq.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbEndpoint {
    pub host: String,
    pub port: u16,
}

impl DbEndpoint {
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

impl fmt::Display for DbEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why `database.host` and `database.port` do not make a list of hosts; `key` is the one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointsError {
    pub key: &'static str,
    pub problem: String,
}

impl fmt::Display for EndpointsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl DatabaseConfig {
    /// The hosts in the order they are tried, each with its port. [`DatabaseConfig::check`]
    /// refuses a configuration for which this fails.
    pub fn endpoints(&self) -> Result<Vec<DbEndpoint>, EndpointsError> {
        let hosts: Vec<&str> = self.host.split(',').map(str::trim).collect();
        if let Some(i) = hosts.iter().position(|h| h.is_empty()) {
            let problem = match hosts.len() {
                1 => "is empty: name a host, or several separated by commas".to_owned(),
                n => format!(
                    "item {} of {n} in `{}` is empty: separate host names with single commas",
                    i + 1,
                    self.host
                ),
            };
            return Err(EndpointsError {
                key: "database.host",
                problem,
            });
        }
        let ports = self.port.as_slice();
        if ports.len() != 1 && ports.len() != hosts.len() {
            return Err(EndpointsError {
                key: "database.port",
                problem: format!(
                    "has {} ports (`{}`) for {} hosts in database.host (`{}`): give one port \
                     for every host or one per host, in the same order",
                    ports.len(),
                    self.port,
                    hosts.len(),
                    self.host
                ),
            });
        }
        Ok(hosts
            .iter()
            .enumerate()
            .map(|(i, host)| DbEndpoint {
                host: (*host).to_owned(),
                // One port: every host's (DbPorts is never empty).
                port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
            })
            .collect())
    }

    /// The hosts and ports as one text, `db1:5432,db2:5433`, for log lines; the file's own
    /// text when they do not pair up.
    pub fn endpoints_text(&self) -> String {
        match self.endpoints() {
            Ok(endpoints) => endpoints
                .iter()
                .map(DbEndpoint::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests;
