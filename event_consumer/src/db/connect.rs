//! Opening a session as libpq does with several hosts: each host of `database.host` in order,
//! the first whose session fits `database.target_session_attrs` (with `read-write`,
//! `SHOW transaction_read_only` must say `off`, as libpq checks), each attempt bounded as a
//! whole by `connect_timeout_seconds`.
//!
//! The hosts are tried here one at a time rather than by handing the driver the whole list:
//! tokio-postgres 0.7 tries the next host too (also after a read-only one under its
//! `TargetSessionAttrs::ReadWrite`), but returns only the last host's error, does not say which
//! host it connected to, and bounds only the TCP connect by `connect_timeout`. The read-only
//! check is ours too, so its refusal carries the SQLSTATE a write would get (25006) and an
//! outage that goes from failed writes to refused sessions is one cause, not two. A
//! server that accepts TCP but never answers (a frozen process, a paused VM) would hold the
//! connect forever, and a failover to the next host never happen; libpq bounds the whole
//! attempt per host. The driver's connect cannot be cancelled from outside, so it runs on a
//! thread of its own that is given up at the deadline: a given-up attempt ends when the server
//! answers or TCP gives up, and while one still hangs that host is skipped at once, so at most
//! one thread per host is ever left waiting.

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::{DatabaseConfig, DbEndpoint, TargetSessionAttrs};
use common::sync::lock;
use postgres::error::SqlState;
use postgres::{Client, SimpleQueryMessage};

use super::driver_panic;
use super::store::{describe, StoreError};
use super::tls::DbTls;

/// Why one host gave no session.
#[derive(Debug)]
pub enum HostCause {
    /// The driver's error: refused, reset, login refused, a missing database, a TLS failure.
    Postgres(postgres::Error),
    /// With `read-write`: the session is read-only (a standby, `default_transaction_read_only`).
    ReadOnly,
    /// No session within `connect_timeout_seconds` (the attempt was given up).
    TimedOut(Duration),
    /// An earlier attempt, given up at its deadline, still waits for this host.
    StillHanging,
    /// This side could not make the attempt: no thread for it, no file descriptor for the
    /// driver (EMFILE, see `driver_panic.rs`), or its thread ended without an answer (a bug).
    Local(String),
}

/// One host that was tried and gave no session, and why.
#[derive(Debug)]
pub struct HostFailure {
    pub endpoint: DbEndpoint,
    pub cause: HostCause,
}

impl HostFailure {
    /// The SQLSTATE the server sent, if any; for a read-only session the one its writes get.
    pub fn sqlstate(&self) -> Option<&str> {
        match &self.cause {
            HostCause::Postgres(e) => e.code().map(|c| c.code()),
            HostCause::ReadOnly => Some(SqlState::READ_ONLY_SQL_TRANSACTION.code()),
            _ => None,
        }
    }

    /// What went wrong at this host, without naming it.
    pub fn detail(&self) -> String {
        match &self.cause {
            HostCause::Postgres(e) => describe(e),
            HostCause::ReadOnly => "the session is read-only (transaction_read_only is on: a \
                 standby, or default_transaction_read_only; a write would get SQLSTATE 25006)"
                .to_owned(),
            HostCause::TimedOut(limit) => format!(
                "no session within connect_timeout_seconds ({:.1} s): timed out",
                limit.as_secs_f64()
            ),
            HostCause::StillHanging => "an earlier attempt, given up after \
                 connect_timeout_seconds, still waits for an answer: timed out"
                .to_owned(),
            HostCause::Local(what) => what.clone(),
        }
    }
}

impl fmt::Display for HostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.detail())
    }
}

/// A session, the host it went to, and the hosts before it that gave none.
pub struct Session {
    pub client: Client,
    pub endpoint: DbEndpoint,
    pub skipped: Vec<HostFailure>,
}

/// Opens a session on the first host that gives one (see the module docs). `settings` applies
/// what every host shares (user, timeouts, options) to a driver configuration.
pub fn open(
    config: &DatabaseConfig,
    settings: impl Fn(&mut postgres::Config),
) -> Result<Session, StoreError> {
    let endpoints = config.endpoints().map_err(|e| {
        // Config::check refuses such a configuration; only one built by hand gets here.
        StoreError::Inconsistent(format!("database configuration not checked: {e}"))
    })?;
    let deadline = Duration::from_secs_f64(config.connect_timeout_seconds);
    let mut failures = Vec::new();
    for endpoint in endpoints.iter() {
        let tls = DbTls::cached(config, endpoint.is_unix_socket()).map_err(StoreError::Tls)?;
        let mut pg = postgres::Config::new();
        pg.host(&endpoint.host).port(endpoint.port);
        settings(&mut pg);
        pg.ssl_mode(tls.postgres_mode());
        let attrs = config.target_session_attrs;
        match connect_within(pg, tls, attrs, endpoint, deadline) {
            Ok(client) => {
                for skipped in &failures {
                    log::debug!("database host skipped: {skipped}");
                }
                return Ok(Session {
                    client,
                    endpoint: endpoint.clone(),
                    skipped: failures,
                });
            }
            Err(cause) => failures.push(HostFailure {
                endpoint: endpoint.clone(),
                cause,
            }),
        }
    }
    Err(StoreError::from_failures(failures, endpoints.len() > 1))
}

/// Attempts given up at their deadline that still wait, by host: such a host is skipped.
static HANGING: Mutex<Option<HashMap<DbEndpoint, usize>>> = Mutex::new(None);

fn hanging() -> std::sync::MutexGuard<'static, Option<HashMap<DbEndpoint, usize>>> {
    lock(&HANGING)
}

/// Where one attempt stands; changed only with [`HANGING`] locked, so the attempt's end and
/// its giving up cannot both miss each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Running,
    Finished,
    GivenUp,
}

/// Connects on a thread of its own and waits for it until `deadline`.
fn connect_within(
    pg: postgres::Config,
    tls: DbTls,
    attrs: TargetSessionAttrs,
    endpoint: &DbEndpoint,
    deadline: Duration,
) -> Result<Client, HostCause> {
    if hanging()
        .as_ref()
        .is_some_and(|h| h.get(endpoint).is_some_and(|&n| n > 0))
    {
        return Err(HostCause::StillHanging);
    }
    let state = Arc::new(Mutex::new(Attempt::Running));
    // Room for the answer, so the thread never blocks on a receiver that gave up.
    let (answer, answered) = sync_channel(1);
    let thread_state = Arc::clone(&state);
    let thread_endpoint = endpoint.clone();
    let spawned = std::thread::Builder::new()
        .name("db-connect".into())
        .spawn(move || {
            let result = connect_checked(&pg, &tls, attrs);
            let mut hanging = hanging();
            let mut state = lock(&thread_state);
            if *state == Attempt::GivenUp {
                if let Some(n) = hanging.as_mut().and_then(|h| h.get_mut(&thread_endpoint)) {
                    *n = n.saturating_sub(1);
                }
                // A session that came too late is closed with the result.
                return;
            }
            *state = Attempt::Finished;
            let _ = answer.send(result);
        });
    if let Err(e) = spawned {
        return Err(HostCause::Local(format!(
            "cannot start a thread to connect: {e}"
        )));
    }
    let result = match answered.recv_timeout(deadline) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => {
            let mut hanging = hanging();
            let mut state = lock(&state);
            if *state == Attempt::Running {
                *state = Attempt::GivenUp;
                *hanging
                    .get_or_insert_with(HashMap::new)
                    .entry(endpoint.clone())
                    .or_default() += 1;
                return Err(HostCause::TimedOut(deadline));
            }
            // It finished just now: its answer is in the channel.
            drop((state, hanging));
            answered.recv().map_err(|_| no_answer())?
        }
        Err(RecvTimeoutError::Disconnected) => return Err(no_answer()),
    };
    result
}

/// Connects, then with `read-write` refuses a read-only session: libpq's check.
fn connect_checked(
    pg: &postgres::Config,
    tls: &DbTls,
    attrs: TargetSessionAttrs,
) -> Result<Client, HostCause> {
    let mut client = driver_panic::catch(|| pg.connect(tls.connector()))
        .map_err(|panic| HostCause::Local(format!("cannot start the database driver: {panic}")))?
        .map_err(HostCause::Postgres)?;
    if attrs == TargetSessionAttrs::ReadWrite {
        let answer = client
            .simple_query("SHOW transaction_read_only")
            .map_err(HostCause::Postgres)?;
        let read_only = answer.iter().any(|message| match message {
            SimpleQueryMessage::Row(row) => row.try_get(0).ok().flatten() != Some("off"),
            _ => false,
        });
        if read_only {
            return Err(HostCause::ReadOnly);
        }
    }
    Ok(client)
}

fn no_answer() -> HostCause {
    HostCause::Local("the connecting thread ended without an answer".into())
}
