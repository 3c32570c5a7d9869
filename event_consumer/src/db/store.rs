//! PostgreSQL storage: the only module that holds SQL (with `connect.rs`, which asks a new
//! session whether it is read-only).
//!
//! A [`Store`] is one connection with its statements prepared once. [`Store::save_batch`]
//! writes any number of events in ONE statement, which PostgreSQL runs as one transaction with
//! one commit: that is what group commit shares between the requests of a batch. Rows carrying
//! an idempotency key that is already stored are not written again; the first row is returned.
//! Each returned row is matched to its event by what the database returns for it: its key, or,
//! where several events of a batch carry none, the number the statement gave it.
//! Retention's statements (a chunk of expired rows deleted, the advisory lock that lets one
//! consumer prune at a time, the table's size) are here too; the retention thread runs them.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use common::calendar::rfc3339_utc;
use common::config::{DatabaseConfig, DbEndpoint};
use common::tls::TlsError;
use common::Event;
use postgres::error::SqlState;
use postgres::{Client, Statement};

use super::connect::{self, Session};
pub use super::connect::{HostCause, HostFailure};
use super::session;

/// The readiness probe's write, rolled back, as ONE statement in ONE message. Sent as three
/// (`BEGIN`, the `INSERT`, `ROLLBACK`), a `ROLLBACK` that never arrived (the consumer's host
/// died after the `INSERT`'s answer, a path that lost that one segment) left the session idle
/// in its transaction, holding the row and a lock on `events`, until TCP gave up on it (2 h).
/// A `DO` block (PL/pgSQL, in every database unless dropped) is run whole by the server once
/// it has the message, whatever happens to the client meanwhile, and it ends its own transaction: on success with its `ROLLBACK`, on an
/// error with the implicit transaction of the statement, so no session of ours is ever left
/// in a transaction, not even an aborted one. (`BEGIN; INSERT …; ROLLBACK` in one message
/// is not enough: an `INSERT` that fails, on a read-only server say, skips the `ROLLBACK` and
/// leaves the session in an aborted transaction that needs another message.)
///
/// The row's id is minus the session's backend pid: no identity value (they start at 1), and
/// no other live session's, so probes of several consumers never wait for each other's rows,
/// nor for a row an orphaned session of an older consumer still holds (those used `-1`).
/// `ON CONFLICT DO NOTHING` skips a committed row that has the id (one written by hand).
const PROBE_SQL: &str = "DO $probe$ BEGIN \
     INSERT INTO events (id, event_type, event_payload) OVERRIDING SYSTEM VALUE \
     VALUES (-pg_backend_pid(), 'readiness probe', '') ON CONFLICT DO NOTHING; \
     ROLLBACK; \
     END $probe$";

/// One event to store, with the idempotency key its request carried.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub event: &'a Event,
    pub idempotency_key: Option<&'a str>,
}

/// Where an event is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    /// RFC 3339, UTC.
    pub received_at: String,
}

/// The outcome for one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written now.
    Created(StoredEvent),
    /// Its idempotency key was already stored (by an earlier request, or earlier in this batch):
    /// nothing was written, this is the first row.
    Existing(StoredEvent),
}

impl Saved {
    pub fn stored(&self) -> &StoredEvent {
        match self {
            Saved::Created(s) | Saved::Existing(s) => s,
        }
    }
}

/// Why a save failed. Callers answer [`StoreError::Unavailable`] with 503 and retry later.
#[derive(Debug)]
pub enum StoreError {
    /// The database cannot be reached or dropped the connection, is shutting down or starting,
    /// or the statement ran past `statement_timeout`. The connection should be replaced.
    Unavailable(postgres::Error),
    /// The database answered with an error that a new connection will not fix (a missing
    /// table, a permission problem): an operator has to act.
    Failed(postgres::Error),
    /// The database's answer did not match the batch: a bug.
    Inconsistent(String),
    /// `database.sslrootcert` cannot be used (it was fine at start: changed since). Nothing
    /// was sent; the next attempt reads it again.
    Tls(TlsError),
    /// A batch got no answer within its deadline (`statement_timeout_seconds` and a margin):
    /// the server is silent (a stopped process, storage that hangs, a partition TCP has not
    /// noticed yet). The call itself still waits; its requests were answered 503.
    NoAnswer(Duration),
    /// No host of `database.host` gave a session: each host tried, in order, with why.
    /// `name_hosts`: there are several, so the text names each.
    Connect {
        failures: Vec<HostFailure>,
        name_hosts: bool,
    },
}

impl StoreError {
    fn from_postgres(error: postgres::Error) -> StoreError {
        if is_unavailable(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Failed(error)
        }
    }

    /// A failed connect: with one host and the driver's error, that error as it always was
    /// (`Unavailable` or `Failed`, the host named by the caller's log line); else every host.
    pub(super) fn from_failures(mut failures: Vec<HostFailure>, several_hosts: bool) -> StoreError {
        let one_driver_error =
            failures.len() == 1 && matches!(failures[0].cause, HostCause::Postgres(_));
        if !several_hosts && one_driver_error {
            if let Some(HostFailure {
                cause: HostCause::Postgres(error),
                ..
            }) = failures.pop()
            {
                return StoreError::from_postgres(error);
            }
        }
        StoreError::Connect {
            failures,
            name_hosts: several_hosts,
        }
    }

    /// What went wrong, without the kind of failure: the SQLSTATE and the server's message, or
    /// the client side's error (refused, reset, timed out).
    pub fn detail(&self) -> String {
        match self {
            StoreError::Unavailable(e) | StoreError::Failed(e) => describe(e),
            StoreError::Inconsistent(what) => {
                format!("unexpected answer from the database: {what}")
            }
            StoreError::Tls(e) => e.to_string(),
            StoreError::NoAnswer(limit) => no_answer(*limit),
            StoreError::Connect {
                failures,
                name_hosts: false,
            } if failures.len() == 1 => failures[0].detail(),
            StoreError::Connect { failures, .. } => failures
                .iter()
                .map(HostFailure::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The SQLSTATE the server sent, if any (with several hosts, when they all sent it).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Unavailable(e) | StoreError::Failed(e) => e.code().map(SqlState::code),
            StoreError::Inconsistent(_) | StoreError::Tls(_) | StoreError::NoAnswer(_) => None,
            StoreError::Connect { failures, .. } => {
                let first = failures.first()?.sqlstate()?;
                failures
                    .iter()
                    .all(|f| f.sqlstate() == Some(first))
                    .then_some(first)
            }
        }
    }

    /// The hosts that gave no session, when this is a failed connect; empty otherwise.
    pub fn host_failures(&self) -> &[HostFailure] {
        match self {
            StoreError::Connect { failures, .. } => failures,
            _ => &[],
        }
    }

    /// True when this connection is of no further use: it is broken or closed, the server is
    /// shutting down, or it is read-only (a standby or a demoted primary: a new connection may
    /// reach the new primary). A full disk or a timeout leave a connection fit for later.
    pub fn needs_new_connection(&self) -> bool {
        if matches!(self, StoreError::Connect { .. } | StoreError::NoAnswer(_)) {
            return true;
        }
        let StoreError::Unavailable(e) = self else {
            return false;
        };
        let Some(code) = e.code() else {
            return true;
        };
        code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    }

    /// True when the server itself refused the statement, so it was certainly not committed
    /// and may be run again on a new connection.
    pub fn certainly_not_committed(&self) -> bool {
        match self {
            StoreError::Unavailable(e) | StoreError::Failed(e) => e.code().is_some(),
            StoreError::Inconsistent(_) | StoreError::NoAnswer(_) => false,
            StoreError::Tls(_) | StoreError::Connect { .. } => true,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "database unavailable: {}", describe(e)),
            StoreError::Failed(e) => write!(f, "database error: {}", describe(e)),
            StoreError::Inconsistent(what) => {
                write!(f, "unexpected answer from the database: {what}")
            }
            StoreError::Tls(e) => write!(f, "database TLS setup: {e}"),
            StoreError::NoAnswer(limit) => f.write_str(&no_answer(*limit)),
            StoreError::Connect { .. } => {
                write!(f, "cannot open a database session: {}", self.detail())
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// The full text of a postgres error: its Display hides the server's message behind "db error".
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => {
            let source = std::error::Error::source(e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            format!("{e}{source}")
        }
    }
}

fn no_answer(limit: Duration) -> String {
    format!(
        "no answer within statement_timeout_seconds + {:.1} s ({:.1} s): timed out",
        super::session::USER_TIMEOUT_MARGIN.as_secs_f64(),
        limit.as_secs_f64()
    )
}

/// Errors that a new connection, later, can cure.
fn is_unavailable(error: &postgres::Error) -> bool {
    let Some(code) = error.code() else {
        // No SQLSTATE: an I/O error, a closed connection, a timeout on our side.
        return true;
    };
    let class = &code.code()[..2];
    // 08 connection exception, 53 insufficient resources, 57 operator intervention
    // (shutdown, crash recovery, statement timeout), 40 serialization / deadlock.
    matches!(class, "08" | "53" | "57" | "40") || *code == SqlState::READ_ONLY_SQL_TRANSACTION
}

/// The advisory lock key of pruning (`pg_try_advisory_lock`); `db_init_script.sh` takes
/// 7423901 for its own runs.
pub const PRUNE_LOCK_KEY: i64 = 7_423_902;

/// One connection with its prepared statements.
pub struct Store {
    client: Client,
    /// The host this session went to.
    endpoint: DbEndpoint,
    /// The hosts tried before it that gave no session.
    skipped: Vec<HostFailure>,
    /// For a batch of one event (the common case below saturation): a plain keyed INSERT,
    /// which costs PostgreSQL about 15 % less per commit than the array form (pgbench, one
    /// client; bench/RESULTS.md).
    insert_one: Statement,
    /// For batches with at most one event without a key: each returned row is matched by its
    /// key, and the one row without a key (if any) to the one such event.
    insert: Statement,
    /// For batches with several events without a key: rows are numbered in the statement and
    /// each returned row carries its number. Row ids are drawn from the identity's sequence in
    /// the numbered CTE, so a returned row is joined back to its number by id; PostgreSQL does
    /// not promise that RETURNING follows the order of the rows inserted.
    insert_numbered: Statement,
    lookup: Statement,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("endpoint", &self.endpoint)
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl Store {
    /// Connects to the first host of `database.host` that gives a session fitting
    /// `target_session_attrs` (see `connect.rs`), with the configured timeouts, and
    /// prepares the statements there.
    pub fn connect(config: &DatabaseConfig) -> Result<Store, StoreError> {
        Store::connect_as(config, "event_consumer")
    }

    /// [`Store::connect`] with another `application_name`, so a session that is not a
    /// worker's (the retention thread's) is told apart in `pg_stat_activity`.
    pub fn connect_as(
        config: &DatabaseConfig,
        application_name: &str,
    ) -> Result<Store, StoreError> {
        let settings = |pg: &mut postgres::Config| session::apply(config, application_name, pg);
        let Session {
            client,
            endpoint,
            mut skipped,
        } = connect::open(config, settings)?;
        match Store::prepare(client, endpoint.clone()) {
            Ok(store) => Ok(Store { skipped, ..store }),
            Err(error) => {
                // A failure on the host chosen is that host's, after those skipped.
                skipped.push(HostFailure {
                    endpoint,
                    cause: HostCause::Postgres(error),
                });
                Err(StoreError::from_failures(
                    skipped,
                    config.host.contains(','),
                ))
            }
        }
    }

    /// The statements, prepared on a new session to `endpoint`.
    fn prepare(mut client: Client, endpoint: DbEndpoint) -> Result<Store, postgres::Error> {
        // `received_at` comes back as a binary timestamp and is formatted here: formatting it
        // with to_char in the statement cost PostgreSQL about 10 % of its throughput.
        // `occurred_at` goes in as a binary timestamptz: the instant, not the offset it was sent
        // with (PostgreSQL keeps none), to the microsecond.
        let insert_sql =
            "INSERT INTO events (event_type, event_payload, idempotency_key, occurred_at) \
             SELECT t, p, k, o \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
                 WITH ORDINALITY AS batch(t, p, k, o, n) ORDER BY n \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING id, idempotency_key, received_at";
        let insert_one_sql =
            "INSERT INTO events (event_type, event_payload, idempotency_key, occurred_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING id, idempotency_key, received_at";
        let insert_numbered_sql = "WITH batch AS MATERIALIZED ( \
                 SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, t, p, k, o, n \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
                     WITH ORDINALITY AS numbered(t, p, k, o, n)), \
             inserted AS ( \
                 INSERT INTO events (id, event_type, event_payload, idempotency_key, occurred_at) \
                 OVERRIDING SYSTEM VALUE \
                 SELECT id, t, p, k, o FROM batch ORDER BY n \
                 ON CONFLICT (idempotency_key) DO NOTHING \
                 RETURNING id, received_at) \
             SELECT batch.n, inserted.id, inserted.received_at \
             FROM inserted JOIN batch USING (id)";
        let lookup_sql = "SELECT id, idempotency_key, received_at FROM events \
             WHERE idempotency_key = ANY($1::text[])";
        let insert = client.prepare(insert_sql)?;
        let insert_one = client.prepare(insert_one_sql)?;
        let insert_numbered = client.prepare(insert_numbered_sql)?;
        let lookup = client.prepare(lookup_sql)?;
        Ok(Store {
            client,
            endpoint,
            skipped: Vec::new(),
            insert_one,
            insert,
            insert_numbered,
            lookup,
        })
    }

    /// The host this session went to.
    pub fn endpoint(&self) -> &DbEndpoint {
        &self.endpoint
    }

    /// The hosts tried before [`Store::endpoint`] that gave no session, in order.
    pub fn skipped(&self) -> &[HostFailure] {
        &self.skipped
    }

    /// Runs an empty query: true when the connection still works.
    pub fn is_valid(&mut self, timeout: Duration) -> bool {
        self.client.is_valid(timeout).is_ok()
    }

    /// Writes a row and rolls it back: fails as a real write would on a read-only server, a
    /// full disk or a missing table, and leaves no row behind (only a dead tuple for vacuum).
    /// See `PROBE_SQL` for why it is one statement.
    pub fn probe_write(&mut self) -> Result<(), StoreError> {
        self.client
            .batch_execute(PROBE_SQL)
            .map_err(StoreError::from_postgres)
    }

    /// Takes the retention's advisory lock for this session, if no other session holds it:
    /// several consumers on one database then prune one at a time. True when taken.
    pub fn try_lock_pruning(&mut self) -> Result<bool, StoreError> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PRUNE_LOCK_KEY])
            .map_err(StoreError::from_postgres)?;
        Ok(row.get(0))
    }

    /// Gives the lock of [`Store::try_lock_pruning`] back (a lost session gives it back too).
    pub fn unlock_pruning(&mut self) -> Result<(), StoreError> {
        self.client
            .query_one("SELECT pg_advisory_unlock($1)", &[&PRUNE_LOCK_KEY])
            .map_err(StoreError::from_postgres)?;
        Ok(())
    }

    /// Deletes at most `limit` events whose `received_at` is older than `retention`, oldest
    /// first, in one short transaction of its own; returns how many it deleted. The subquery
    /// walks the index on `received_at` (`schema.sql`) from its oldest end, so a chunk costs
    /// the same whether the backlog holds a thousand rows or ten million. Row locks only:
    /// inserts are not blocked. `= ANY(ARRAY(…))` and not `IN (…)`: with `IN` PostgreSQL 15
    /// chose a hash join over a scan of the whole table, 0.48 s a chunk of 5000 next to a
    /// backlog of a million rows, against 25 ms through the primary key (bench/notes/RETENTION.md).
    pub fn prune_chunk(&mut self, retention: Duration, limit: i64) -> Result<u64, StoreError> {
        self.client
            .execute(
                "DELETE FROM events WHERE id = ANY(ARRAY( \
                     SELECT id FROM events \
                     WHERE received_at < now() - make_interval(secs => $1) \
                     ORDER BY received_at LIMIT $2))",
                &[&retention.as_secs_f64(), &limit],
            )
            .map_err(StoreError::from_postgres)
    }

    /// Bytes the events table takes on disk: its heap, TOAST and indexes
    /// (`pg_total_relation_size`).
    pub fn table_size(&mut self) -> Result<u64, StoreError> {
        let row = self
            .client
            .query_one("SELECT pg_total_relation_size('events')", &[])
            .map_err(StoreError::from_postgres)?;
        let bytes: i64 = row.get(0);
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// Saves one event.
    pub fn save(
        &mut self,
        event: &Event,
        idempotency_key: Option<&str>,
    ) -> Result<Saved, StoreError> {
        let mut saved = self.save_batch(&[NewEvent {
            event,
            idempotency_key,
        }])?;
        saved
            .pop()
            .ok_or_else(|| StoreError::Inconsistent("no row for a batch of one".into()))
    }

    /// Saves a batch in one statement (one transaction, one commit) and returns one outcome per
    /// input, in input order. A key that appears twice in the batch is written once: the first
    /// occurrence gets `Created`, the later ones `Existing` with the same row.
    pub fn save_batch(&mut self, batch: &[NewEvent<'_>]) -> Result<Vec<Saved>, StoreError> {
        // Only the first occurrence of each key goes to the database.
        let mut first_with_key: HashMap<&str, usize> = HashMap::new();
        let mut written: Vec<usize> = Vec::with_capacity(batch.len());
        for (index, new) in batch.iter().enumerate() {
            match new.idempotency_key {
                Some(key) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        first_with_key.entry(key)
                    {
                        slot.insert(index);
                        written.push(index);
                    }
                }
                None => written.push(index),
            }
        }
        let types: Vec<&str> = written
            .iter()
            .map(|&i| batch[i].event.event_type())
            .collect();
        let payloads: Vec<&str> = written
            .iter()
            .map(|&i| batch[i].event.event_payload())
            .collect();
        let keys: Vec<Option<&str>> = written.iter().map(|&i| batch[i].idempotency_key).collect();
        let times: Vec<Option<SystemTime>> = written
            .iter()
            .map(|&i| batch[i].event.occurred_at())
            .collect();
        let mut outcome: Vec<Option<Saved>> = vec![None; batch.len()];
        let keyless = keys.iter().filter(|k| k.is_none()).count();
        if keyless <= 1 {
            let rows = match (
                types.as_slice(),
                payloads.as_slice(),
                keys.as_slice(),
                times.as_slice(),
            ) {
                ([t], [p], [k], [o]) => self.client.query(&self.insert_one, &[t, p, k, o]),
                _ => self
                    .client
                    .query(&self.insert, &[&types, &payloads, &keys, &times]),
            }
            .map_err(StoreError::from_postgres)?;
            let lone_keyless = written
                .iter()
                .copied()
                .find(|&i| batch[i].idempotency_key.is_none());
            for row in &rows {
                let key: Option<&str> = row.get(1);
                let index = match key {
                    Some(key) => first_with_key.get(key).copied(),
                    None => lone_keyless,
                };
                place(&mut outcome, index, row.get(0), row.get(2))?;
            }
        } else {
            let rows = self
                .client
                .query(&self.insert_numbered, &[&types, &payloads, &keys, &times])
                .map_err(StoreError::from_postgres)?;
            for row in &rows {
                // WITH ORDINALITY numbers from 1.
                let n: i64 = row.get(0);
                let index = usize::try_from(n - 1)
                    .ok()
                    .and_then(|i| written.get(i).copied());
                place(&mut outcome, index, row.get(1), row.get(2))?;
            }
        }
        if written
            .iter()
            .any(|&i| batch[i].idempotency_key.is_none() && outcome[i].is_none())
        {
            return Err(StoreError::Inconsistent(
                "fewer rows returned than events without a key".into(),
            ));
        }

        // Keys that were not written were already stored: fetch their first rows.
        let missing: Vec<&str> = first_with_key
            .iter()
            .filter(|(_, &i)| outcome[i].is_none())
            .map(|(&k, _)| k)
            .collect();
        if !missing.is_empty() {
            let rows = self
                .client
                .query(&self.lookup, &[&missing])
                .map_err(StoreError::from_postgres)?;
            for row in &rows {
                let key: &str = row.get(1);
                if let Some(&index) = first_with_key.get(key) {
                    outcome[index] = Some(Saved::Existing(StoredEvent {
                        id: row.get(0),
                        received_at: received_at(row.get(2)),
                    }));
                }
            }
        }

        // Later occurrences of a key in this batch share the first one's row.
        for (index, new) in batch.iter().enumerate() {
            if outcome[index].is_some() {
                continue;
            }
            if let Some(&first) = new.idempotency_key.and_then(|k| first_with_key.get(k)) {
                if first != index {
                    outcome[index] = outcome[first]
                        .as_ref()
                        .map(|s| Saved::Existing(s.stored().clone()));
                }
            }
        }
        outcome
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| {
                    StoreError::Inconsistent("a key conflicted but its row was not found".into())
                })
            })
            .collect()
    }
}

/// Records a returned row as the outcome of input `index`; a row that matches no input, or one
/// already matched, is an answer the batch cannot explain.
fn place(
    outcome: &mut [Option<Saved>],
    index: Option<usize>,
    id: i64,
    received_at: SystemTime,
) -> Result<(), StoreError> {
    match index.and_then(|i| outcome.get_mut(i)) {
        Some(slot @ None) => {
            *slot = Some(Saved::Created(StoredEvent {
                id,
                received_at: self::received_at(received_at),
            }));
            Ok(())
        }
        _ => Err(StoreError::Inconsistent(
            "a returned row matches no input, or one matched twice".into(),
        )),
    }
}

/// `received_at` as the API shows it: RFC 3339 in UTC with microseconds,
/// `2026-11-26T23:56:18.123456Z` (what `to_char(… 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` gives).
/// PostgreSQL timestamps have microsecond precision, so nothing is cut.
fn received_at(time: SystemTime) -> String {
    rfc3339_utc(time, 6)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(micros: i64) -> SystemTime {
        if micros >= 0 {
            UNIX_EPOCH + Duration::from_micros(micros as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
        }
    }

    #[test]
    fn received_at_is_rfc3339_utc_with_microseconds() {
        assert_eq!(received_at(at(0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(received_at(at(1)), "1970-01-01T00:00:00.000001Z");
        assert_eq!(received_at(at(-1)), "1969-12-31T23:59:59.999999Z");
        // date -u -d @1795737378 → Thu Nov 26 23:56:18 UTC 2026
        assert_eq!(
            received_at(at(1_795_737_378_123_456)),
            "2026-11-26T23:56:18.123456Z"
        );
        // Leap days, century rules and year ends.
        assert_eq!(
            received_at(at(951_782_400_000_000)),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            received_at(at(4_107_542_399_999_999)),
            "2100-02-28T23:59:59.999999Z"
        );
        assert_eq!(
            received_at(at(4_107_542_400_000_000)),
            "2100-03-01T00:00:00.000000Z"
        );
        assert_eq!(
            received_at(at(1_704_067_199_000_000)),
            "2023-12-31T23:59:59.000000Z"
        );
    }
}
