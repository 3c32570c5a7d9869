//! One database connection of the pipeline: a [`Store`] when connected, its reconnect backoff,
//! and storing one batch with it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::config::DatabaseConfig;

use crate::metrics::Metrics;
use crate::pipeline::{Job, JobOutcome, Task};
use crate::store::{NewEvent, Saved, Store, StoreError};

/// Reconnect backoff of an idle connection whose database is down: 0.1 s doubling to 5 s.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A connection unused for this long is checked with an empty query before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

/// What every connection needs to know about the database: where it is and whether it is up.
#[derive(Debug)]
pub struct Database {
    config: DatabaseConfig,
    metrics: Arc<Metrics>,
    /// Bumped whenever a connection finds the database gone, so the others check themselves
    /// before they are trusted (after a database restart every connection is dead).
    failure_epoch: AtomicU64,
    /// Whether the database is known to be down, so the outage is logged once, not per request.
    down: AtomicBool,
}

impl Database {
    pub fn new(config: DatabaseConfig, metrics: Arc<Metrics>) -> Database {
        Database {
            config,
            metrics,
            failure_epoch: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn mark_down(&self, error: &StoreError) {
        self.metrics.record_db_error();
        self.failure_epoch.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            log::error!("{error}; answering 503 until it is back");
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            log::info!("database is reachable again");
        }
    }
}

/// One database connection and its reconnect state. Used by one thread at a time: it is
/// handed out from the pipeline's idle set and given back after its batch.
#[derive(Debug)]
pub struct DbConnection {
    pub id: usize,
    db: Arc<Database>,
    store: Option<Store>,
    store_epoch: u64,
    last_used: Instant,
    next_connect: Instant,
    reconnect_delay: Duration,
}

impl DbConnection {
    pub fn new(id: usize, db: Arc<Database>) -> DbConnection {
        DbConnection {
            id,
            db,
            store: None,
            store_epoch: 0,
            last_used: Instant::now(),
            next_connect: Instant::now(),
            reconnect_delay: RECONNECT_MIN,
        }
    }

    pub fn connect(&mut self) -> bool {
        let epoch = self.db.failure_epoch.load(Ordering::Relaxed);
        match Store::connect(&self.db.config) {
            Ok(store) => {
                self.store = Some(store);
                self.store_epoch = epoch;
                self.last_used = Instant::now();
                self.reconnect_delay = RECONNECT_MIN;
                self.db.mark_up();
                true
            }
            Err(e) => {
                self.store = None;
                self.db.mark_down(&e);
                self.next_connect = Instant::now() + self.reconnect_delay;
                self.reconnect_delay = (self.reconnect_delay * 2).min(RECONNECT_MAX);
                false
            }
        }
    }

    /// Whether this idle connection is disconnected and its backoff has passed.
    pub fn reconnect_due(&self, now: Instant) -> bool {
        self.store.is_none() && now >= self.next_connect
    }

    /// Between batches: reconnect with backoff when disconnected.
    pub fn idle(&mut self) {
        if self.reconnect_due(Instant::now()) {
            self.connect();
        }
    }

    /// Forgets the PostgreSQL connection (after a panic it may be mid-protocol).
    pub fn discard(&mut self) {
        self.store = None;
    }

    /// A connection fit for a batch: checked first when another connection saw the database
    /// fail since this one was opened, or when it sat unused for a while.
    fn ready_store(&mut self) -> Option<&mut Store> {
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
            return None;
        }
        self.last_used = Instant::now();
        self.store.as_mut()
    }

    /// Stores the batch and pushes one outcome per job, in order, onto `outcomes`.
    pub fn process(&mut self, batch: &[Job], outcomes: &mut Vec<JobOutcome>) {
        let Some(_) = self.ready_store() else {
            outcomes.extend(batch.iter().map(|_| JobOutcome::Unavailable));
            return;
        };
        let events: Vec<NewEvent<'_>> = batch
            .iter()
            .filter_map(|job| match &job.task {
                Task::Store {
                    event,
                    idempotency_key,
                } => Some(NewEvent {
                    event,
                    idempotency_key: idempotency_key.as_deref(),
                }),
                Task::Ping => None,
            })
            .collect();
        if events.is_empty() {
            // Only readiness pings: prove the connection answers.
            let outcome = if self.ping() {
                JobOutcome::Ready
            } else {
                JobOutcome::Unavailable
            };
            outcomes.extend(batch.iter().map(|_| outcome.clone()));
            return;
        }
        let result = self.save_with_one_retry(&events);
        drop(events);
        match result {
            Ok(saved) => {
                let created = saved
                    .iter()
                    .filter(|s| matches!(s, Saved::Created(_)))
                    .count() as u64;
                self.db
                    .metrics
                    .record_commit(saved.len(), created, saved.len() as u64 - created);
                let mut saved = saved.into_iter();
                outcomes.extend(batch.iter().map(|job| {
                    match job.task {
                        Task::Store { .. } => saved
                            .next()
                            .map(JobOutcome::Saved)
                            .unwrap_or(JobOutcome::Internal),
                        // The commit just proved the connection answers.
                        Task::Ping => JobOutcome::Ready,
                    }
                }));
            }
            Err(error) => {
                let outcome = match &error {
                    StoreError::Inconsistent(_) => {
                        log::error!("db connection {}: {error}", self.id);
                        JobOutcome::Internal
                    }
                    StoreError::Failed(_) => {
                        self.db.metrics.record_db_error();
                        log::error!("db connection {}: {error}", self.id);
                        JobOutcome::Unavailable
                    }
                    StoreError::Unavailable(_) => JobOutcome::Unavailable,
                };
                outcomes.extend(batch.iter().map(|_| outcome.clone()));
            }
        }
    }

    /// True when the connection answers an empty query, or a new one could be opened.
    fn ping(&mut self) -> bool {
        if self
            .store
            .as_mut()
            .is_some_and(|s| s.is_valid(Duration::from_secs(1)))
        {
            return true;
        }
        self.store = None;
        self.connect()
    }

    /// Saves; when the connection turns out dead and the server certainly did not commit
    /// (it refused the statement, e.g. while shutting down), tries once more on a new one.
    fn save_with_one_retry(&mut self, events: &[NewEvent<'_>]) -> Result<Vec<Saved>, StoreError> {
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| StoreError::Inconsistent("no connection".into()))?;
        match store.save_batch(events) {
            Ok(saved) => Ok(saved),
            Err(error @ StoreError::Unavailable(_)) => {
                self.store = None;
                self.db.mark_down(&error);
                if error.certainly_not_committed() && self.connect() {
                    if let Some(store) = self.store.as_mut() {
                        let retried = store.save_batch(events);
                        if let Err(e @ StoreError::Unavailable(_)) = &retried {
                            self.store = None;
                            self.db.mark_down(e);
                        }
                        return retried;
                    }
                }
                Err(error)
            }
            Err(other) => Err(other),
        }
    }
}
