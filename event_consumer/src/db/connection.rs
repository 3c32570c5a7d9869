//! One database connection: a [`Store`] when connected, and storing one batch of [`Task`]s
//! with it, one [`Outcome`] per task. Whether the database may be used at all (during an
//! outage: once per backoff interval) is decided by [`Health`], shared by every connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::config::{DatabaseConfig, DbEndpoint};
use common::sync::lock;

use super::health::Health;
use super::session::USER_TIMEOUT_MARGIN;
use super::store::{NewEvent, Saved, Store, StoreError};
use super::{Outcome, Task};

/// A connection unused for this long is checked with an empty query before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

/// What every connection needs to know about the database: where it is and whether it works.
#[derive(Debug)]
pub struct Database {
    config: DatabaseConfig,
    /// Bumped whenever a connection finds the database gone, so the others check themselves
    /// before they are trusted (after a database restart every connection is dead).
    failure_epoch: AtomicU64,
    /// The host the last new session went to, so a move to another (a failover) is logged
    /// once, not per connection.
    last_endpoint: Mutex<Option<DbEndpoint>>,
    pub health: Health,
}

impl Database {
    pub fn new(config: DatabaseConfig) -> Database {
        // `db1:5432,db2:5433`: the outage lines name every host tried.
        let target = config.endpoints_text();
        Database {
            config,
            failure_epoch: AtomicU64::new(0),
            last_endpoint: Mutex::new(None),
            health: Health::new(target),
        }
    }

    /// Logs where new sessions go when that changed: at the first connect, and when another
    /// host took over (with why the hosts before it were skipped).
    fn connected(&self, store: &Store) {
        let endpoint = store.endpoint();
        let mut last = lock(&self.last_endpoint);
        if last.as_ref() == Some(endpoint) {
            return;
        }
        let skipped: Vec<String> = store.skipped().iter().map(|f| f.to_string()).collect();
        let skipped = match skipped.is_empty() {
            true => String::new(),
            false => format!("; skipped {}", skipped.join("; ")),
        };
        let attrs = self.config.target_session_attrs;
        match last.replace(endpoint.clone()) {
            None => log::info!("database sessions go to {endpoint} ({attrs}){skipped}"),
            Some(before) => log::warn!(
                "database sessions go to {endpoint} now ({attrs}), no longer to {before}{skipped}"
            ),
        }
    }

    /// Where the database is, as configured.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// How long a request may wait for the database before it is answered 503 whatever the
    /// database does: `statement_timeout_seconds`, after which the server cancels a statement
    /// itself, and the margin its cancel needs to arrive.
    pub fn answer_within(&self) -> Duration {
        Duration::from_secs_f64(self.config.statement_timeout_seconds) + USER_TIMEOUT_MARGIN
    }

    /// A batch got no answer within [`Database::answer_within`]: an outage starts (or goes on)
    /// as with any failure, and the other connections check themselves before their next use.
    pub fn no_answer(&self) {
        self.failed(&StoreError::NoAnswer(self.answer_within()));
    }

    /// A use of the database failed: the other connections check themselves before their
    /// next use when this one needs replacing, and [`Health`] starts or continues the outage.
    pub fn failed(&self, error: &StoreError) {
        if error.needs_new_connection() {
            self.failure_epoch.fetch_add(1, Ordering::Relaxed);
        }
        self.health.failed(error);
    }

    fn succeeded(&self) {
        self.health.succeeded();
    }
}

/// What a connection did that `/metrics` counts, since the user last took them
/// ([`DbConnection::take_counts`]): plain numbers, so this layer needs no metrics type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Attempts to open a PostgreSQL connection.
    pub connects: u64,
    /// Failed connects and statements.
    pub errors: u64,
}

/// One database connection. Used by one thread at a time: it is handed out from the
/// pipeline's idle set and given back after its batch.
#[derive(Debug)]
pub struct DbConnection {
    pub id: usize,
    db: Arc<Database>,
    store: Option<Store>,
    store_epoch: u64,
    last_used: Instant,
    counts: Counts,
}

impl DbConnection {
    pub fn new(id: usize, db: Arc<Database>) -> DbConnection {
        DbConnection {
            id,
            db,
            store: None,
            store_epoch: 0,
            last_used: Instant::now(),
            counts: Counts::default(),
        }
    }

    /// The connects and errors since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// Opens a PostgreSQL connection; a failure is reported to [`Health`]. Callers check
    /// [`Health::may_attempt`] first.
    pub fn connect(&mut self) -> bool {
        let epoch = self.db.failure_epoch.load(Ordering::Relaxed);
        self.counts.connects += 1;
        match Store::connect(&self.db.config) {
            Ok(store) => {
                self.db.connected(&store);
                self.store = Some(store);
                self.store_epoch = epoch;
                self.last_used = Instant::now();
                true
            }
            Err(e) => {
                self.store = None;
                self.counts.errors += 1;
                self.db.failed(&e);
                false
            }
        }
    }

    /// Whether this idle connection has something to do between batches: reconnect (outside
    /// an outage), or make the outage's next attempt.
    pub fn wants_maintenance(&self, now: Instant) -> bool {
        let health = &self.db.health;
        if health.is_down() {
            health.attempt_due(now)
        } else {
            self.store.is_none()
        }
    }

    /// Between batches: outside an outage, reconnects when disconnected; during one, makes its
    /// next attempt (when due) with the probe write, so an outage ends without traffic too.
    pub fn maintain(&mut self) {
        let health = &self.db.health;
        if !health.is_down() {
            if self.store.is_none() {
                self.connect();
            }
        } else if health.may_attempt(Instant::now()) && self.probe() {
            self.db.succeeded();
        }
    }

    /// Forgets the PostgreSQL connection (after a panic it may be mid-protocol).
    pub fn discard(&mut self) {
        self.store = None;
    }

    /// A connection fit for a batch: checked first when another connection saw the database
    /// fail since this one was opened, or when it sat unused for a while.
    fn ready_store(&mut self) -> bool {
        let epoch = self.db.failure_epoch.load(Ordering::Relaxed);
        let suspect = epoch != self.store_epoch || self.last_used.elapsed() > IDLE_CHECK_AFTER;
        if let Some(store) = self.store.as_mut() {
            if suspect && !store.is_valid(Duration::from_secs(1)) {
                log::debug!("db connection {}: found dead, reconnecting", self.id);
                self.store = None;
            } else {
                self.store_epoch = epoch;
            }
        }
        if self.store.is_none() && !self.connect() {
            return false;
        }
        self.last_used = Instant::now();
        true
    }

    /// Stores the tasks and pushes one outcome per task, in order, onto `outcomes`. During an
    /// outage the batch is the outage's next attempt when one is due, and is refused
    /// ([`Outcome::Unavailable`]) without touching the database otherwise.
    pub fn process(&mut self, tasks: &[Task], outcomes: &mut Vec<Outcome>) {
        let first = outcomes.len();
        self.attempt(tasks, outcomes);
        let refused = outcomes[first..]
            .iter()
            .filter(|o| **o == Outcome::Unavailable)
            .count();
        if refused > 0 {
            self.db.health.refused(refused);
        }
    }

    fn attempt(&mut self, tasks: &[Task], outcomes: &mut Vec<Outcome>) {
        let all = |outcomes: &mut Vec<Outcome>, outcome: Outcome| {
            outcomes.extend(tasks.iter().map(|_| outcome.clone()));
        };
        if !self.db.health.may_attempt(Instant::now()) || !self.ready_store() {
            return all(outcomes, Outcome::Unavailable);
        }
        let mut events: Vec<NewEvent<'_>> =
            Vec::with_capacity(tasks.iter().map(Task::events).sum());
        for task in tasks {
            match task {
                Task::Store {
                    event,
                    idempotency_key,
                } => events.push(NewEvent {
                    event,
                    idempotency_key: idempotency_key.as_deref(),
                }),
                Task::StoreBatch { items } => events.extend(items.iter().map(|item| NewEvent {
                    event: &item.event,
                    idempotency_key: item.idempotency_key.as_deref(),
                })),
                Task::Ping => {}
            }
        }
        if events.is_empty() {
            // Only readiness checks: ready when a write would succeed.
            return if self.probe() {
                self.db.succeeded();
                all(outcomes, Outcome::Ready)
            } else {
                all(outcomes, Outcome::Unavailable)
            };
        }
        let result = self.save_with_one_retry(&events);
        drop(events);
        match result {
            Ok(saved) => {
                self.db.succeeded();
                let mut saved = saved.into_iter();
                outcomes.extend(tasks.iter().map(|task| match task {
                    Task::Store { .. } => saved.next().map_or(Outcome::Internal, Outcome::Saved),
                    Task::StoreBatch { items } => {
                        let mine: Vec<_> = saved.by_ref().take(items.len()).collect();
                        if mine.len() == items.len() {
                            Outcome::SavedBatch(mine)
                        } else {
                            Outcome::Internal
                        }
                    }
                    // The commit just proved that writes work.
                    Task::Ping => Outcome::Ready,
                }));
            }
            Err(StoreError::Inconsistent(what)) => {
                log::error!(
                    "db connection {}: unexpected answer from the database: {what}",
                    self.id
                );
                all(outcomes, Outcome::Internal)
            }
            // Reported to Health by save_with_one_retry.
            Err(_) => all(outcomes, Outcome::Unavailable),
        }
    }

    /// The rolled-back probe write on this connection (opened first when needed); a failure
    /// is reported to [`Health`].
    fn probe(&mut self) -> bool {
        if self.store.is_none() && !self.connect() {
            return false;
        }
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        match store.probe_write() {
            Ok(()) => true,
            Err(error) => {
                self.failed(&error);
                false
            }
        }
    }

    /// Reports a failure of this connection's statement; drops the connection when it is of
    /// no further use (broken, or read-only: a new one may reach a writable server).
    fn failed(&mut self, error: &StoreError) {
        if error.needs_new_connection() {
            self.store = None;
        }
        self.counts.errors += 1;
        self.db.failed(error);
    }

    /// Saves; when the connection turns out unusable and the server certainly did not commit
    /// (it refused the statement, e.g. while shutting down, or being read-only), tries once
    /// more on a new connection, if the outage this failure starts allows an attempt now
    /// (only the first retry follows at once; later ones wait for the backoff).
    fn save_with_one_retry(&mut self, events: &[NewEvent<'_>]) -> Result<Vec<Saved>, StoreError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| StoreError::Inconsistent("no connection".into()))?;
        let error = match store.save_batch(events) {
            Ok(saved) => return Ok(saved),
            Err(error @ StoreError::Inconsistent(_)) => return Err(error),
            Err(error) => error,
        };
        self.failed(&error);
        let retry = error.needs_new_connection()
            && error.certainly_not_committed()
            && self.db.health.may_attempt(Instant::now())
            && self.connect();
        if !retry {
            return Err(error);
        }
        let Some(store) = self.store.as_mut() else {
            return Err(error);
        };
        let retried = store.save_batch(events);
        if let Err(e) = &retried {
            if !matches!(e, StoreError::Inconsistent(_)) {
                self.failed(e);
            }
        }
        retried
    }
}
