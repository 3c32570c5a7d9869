//! Several database hosts, as libpq takes them: `database.host` a comma-separated list,
//! `database.port` one port for every host or one per host, `database.target_session_attrs`
//! which session is good enough. The hosts are tried in order at every new connection.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::DatabaseConfig;

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
    /// The hosts in the order they are tried, each with its port. `Config::check` refuses a
    /// configuration for which this fails.
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
