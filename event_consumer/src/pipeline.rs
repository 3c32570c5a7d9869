//! The hand-off between connections and the database: a bounded queue of validated events and
//! a fixed pool of database workers, each owning one [`Store`] (one PostgreSQL connection).
//!
//! Group commit: a worker takes every job waiting at that moment (up to `max_batch`) and stores
//! them with one statement and one commit. Nothing waits for a batch to fill: at low load a
//! batch is one event; under load, events pile up while a commit is in flight and the next
//! batch takes them all, so the cost of a commit (an fsync) is shared.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::config::DatabaseConfig;
use common::Event;

use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::{NewEvent, Saved, Store, StoreError};

/// What a connection gets back for its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Saved(Saved),
    /// The database answered a ping.
    Ready,
    /// The database cannot take it now: answer 503 and let the client retry.
    Unavailable,
    /// A bug (a panic, an answer that does not match): answer 500.
    Internal,
}

/// Where a connection waits for the outcome of its job. One per connection, reused for each of
/// its requests, so the request path allocates nothing for the hand-off.
#[derive(Debug, Default)]
pub struct ReplySlot {
    value: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl ReplySlot {
    fn put(&self, outcome: Outcome) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.ready.notify_one();
    }

    /// Blocks until a worker answers. Every job is answered, also when its worker panics.
    pub fn wait(&self) -> Outcome {
        let mut value = self.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = value.take() {
                return outcome;
            }
            value = self.ready.wait(value).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[derive(Debug)]
pub enum Job {
    Store {
        event: Event,
        idempotency_key: Option<String>,
        reply: Arc<ReplySlot>,
    },
    /// Readiness check: does the database answer?
    Ping { reply: Arc<ReplySlot> },
}

impl Job {
    fn reply(&self) -> &ReplySlot {
        match self {
            Job::Store { reply, .. } | Job::Ping { reply } => reply,
        }
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    Full,
    Closed,
}

#[derive(Debug)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// A bounded FIFO with a blocking "take everything up to N".
#[derive(Debug)]
pub struct Queue {
    state: Mutex<QueueState>,
    not_empty: Condvar,
    capacity: usize,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            not_empty: Condvar::new(),
            capacity,
        }
    }

    pub fn push(&self, job: Job) -> Result<(), QueueError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return Err(QueueError::Closed);
        }
        if state.jobs.len() >= self.capacity {
            return Err(QueueError::Full);
        }
        state.jobs.push_back(job);
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Moves up to `max` waiting jobs into `batch`, waiting at most `wait` for the first one.
    /// Returns false once the queue is closed and empty.
    fn take_batch(&self, max: usize, wait: Duration, batch: &mut Vec<Job>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.jobs.is_empty() && !state.closed {
            state = self
                .not_empty
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = state.jobs.len().min(max);
        batch.extend(state.jobs.drain(..n));
        // More left for another worker: pass the wake-up on.
        if !state.jobs.is_empty() {
            self.not_empty.notify_one();
        }
        !(state.closed && state.jobs.is_empty() && batch.is_empty())
    }

    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses new jobs; workers finish what is queued, then stop.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.not_empty.notify_all();
    }
}

/// What the workers share.
#[derive(Debug)]
pub struct Pipeline {
    pub queue: Queue,
    database: DatabaseConfig,
    max_batch: usize,
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
    /// Bumped whenever a worker finds the database gone, so the others check their
    /// connections before trusting them (after a database restart every connection is dead).
    failure_epoch: AtomicU64,
    /// Whether the database is known to be down, so the outage is logged once, not per request.
    down: AtomicBool,
}

/// Reconnect backoff of an idle worker whose database is down: 0.1 s doubling to 5 s.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A connection unused for this long is checked with an empty query before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(10);

impl Pipeline {
    pub fn new(
        database: DatabaseConfig,
        queue_capacity: usize,
        max_batch: usize,
        metrics: Arc<Metrics>,
        notifier: Arc<Notifier>,
    ) -> Pipeline {
        Pipeline {
            queue: Queue::new(queue_capacity),
            database,
            max_batch,
            metrics,
            notifier,
            failure_epoch: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// The worker loop: runs until the queue is closed and drained.
    pub fn run_worker(self: &Arc<Self>, id: usize) {
        let mut worker = Worker {
            id,
            pipeline: Arc::clone(self),
            store: None,
            store_epoch: 0,
            last_used: Instant::now(),
            next_connect: Instant::now(),
            reconnect_delay: RECONNECT_MIN,
        };
        worker.connect();
        let tick = self
            .notifier
            .watchdog_tick_interval()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let open = self.queue.take_batch(self.max_batch, tick, &mut batch);
            self.notifier.watchdog_tick();
            if batch.is_empty() {
                if !open {
                    break;
                }
                worker.idle();
                continue;
            }
            self.metrics
                .queued
                .store(self.queue.len(), Ordering::Relaxed);
            let result = catch_unwind(AssertUnwindSafe(|| worker.process(&mut batch)));
            if result.is_err() {
                log::error!(
                    "worker {id}: panic while storing a batch of {}; answered 500",
                    batch.len()
                );
                // A panic may leave the connection mid-protocol: start over with a new one.
                worker.store = None;
            }
            // Jobs not answered (only after a panic) get a 500; answered ones were drained.
            for job in batch.drain(..) {
                job.reply().put(Outcome::Internal);
            }
        }
        log::debug!("worker {id}: stopped");
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

struct Worker {
    id: usize,
    pipeline: Arc<Pipeline>,
    store: Option<Store>,
    store_epoch: u64,
    last_used: Instant,
    next_connect: Instant,
    reconnect_delay: Duration,
}

impl Worker {
    fn connect(&mut self) -> bool {
        let epoch = self.pipeline.failure_epoch.load(Ordering::Relaxed);
        match Store::connect(&self.pipeline.database) {
            Ok(store) => {
                self.store = Some(store);
                self.store_epoch = epoch;
                self.last_used = Instant::now();
                self.reconnect_delay = RECONNECT_MIN;
                self.pipeline.mark_up();
                true
            }
            Err(e) => {
                self.store = None;
                self.pipeline.mark_down(&e);
                self.next_connect = Instant::now() + self.reconnect_delay;
                self.reconnect_delay = (self.reconnect_delay * 2).min(RECONNECT_MAX);
                false
            }
        }
    }

    /// Between batches: reconnect with backoff when disconnected.
    fn idle(&mut self) {
        if self.store.is_none() && Instant::now() >= self.next_connect {
            self.connect();
        }
    }

    /// A connection fit for a batch: checked first when another worker saw the database fail
    /// since it was opened, or when it sat unused for a while.
    fn ready_store(&mut self) -> Option<&mut Store> {
        let epoch = self.pipeline.failure_epoch.load(Ordering::Relaxed);
        let suspect = epoch != self.store_epoch || self.last_used.elapsed() > IDLE_CHECK_AFTER;
        if let Some(store) = self.store.as_mut() {
            if suspect && !store.is_valid(Duration::from_secs(1)) {
                log::debug!("worker {}: connection found dead, reconnecting", self.id);
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

    /// Answers every job of the batch and empties it.
    fn process(&mut self, batch: &mut Vec<Job>) {
        let Some(_) = self.ready_store() else {
            for job in batch.drain(..) {
                job.reply().put(Outcome::Unavailable);
            }
            return;
        };
        let mut events: Vec<NewEvent<'_>> = Vec::with_capacity(batch.len());
        for job in batch.iter() {
            if let Job::Store {
                event,
                idempotency_key,
                ..
            } = job
            {
                events.push(NewEvent {
                    event,
                    idempotency_key: idempotency_key.as_deref(),
                });
            }
        }
        if events.is_empty() {
            // Only readiness pings: prove the connection answers.
            let outcome = if self.ping() {
                Outcome::Ready
            } else {
                Outcome::Unavailable
            };
            for job in batch.drain(..) {
                job.reply().put(outcome.clone());
            }
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
                self.pipeline.metrics.record_commit(
                    saved.len(),
                    created,
                    saved.len() as u64 - created,
                );
                let mut saved = saved.into_iter();
                for job in batch.drain(..) {
                    let outcome = match &job {
                        Job::Store { .. } => saved
                            .next()
                            .map(Outcome::Saved)
                            .unwrap_or(Outcome::Internal),
                        Job::Ping { .. } => Outcome::Ready,
                    };
                    job.reply().put(outcome);
                }
            }
            Err(error) => {
                let outcome = match &error {
                    StoreError::Inconsistent(_) => {
                        log::error!("worker {}: {error}", self.id);
                        Outcome::Internal
                    }
                    StoreError::Failed(_) => {
                        self.pipeline.metrics.record_db_error();
                        log::error!("worker {}: {error}", self.id);
                        Outcome::Unavailable
                    }
                    StoreError::Unavailable(_) => Outcome::Unavailable,
                };
                for job in batch.drain(..) {
                    job.reply().put(outcome.clone());
                }
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
                self.pipeline.mark_down(&error);
                if error.certainly_not_committed() && self.connect() {
                    if let Some(store) = self.store.as_mut() {
                        let retried = store.save_batch(events);
                        if let Err(e @ StoreError::Unavailable(_)) = &retried {
                            self.store = None;
                            self.pipeline.mark_down(e);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ping_job() -> (Job, Arc<ReplySlot>) {
        let slot = Arc::new(ReplySlot::default());
        (
            Job::Ping {
                reply: Arc::clone(&slot),
            },
            slot,
        )
    }

    #[test]
    fn the_queue_refuses_jobs_past_its_capacity_and_after_close() {
        let queue = Queue::new(2);
        assert!(queue.push(ping_job().0).is_ok());
        assert!(queue.push(ping_job().0).is_ok());
        assert_eq!(queue.push(ping_job().0), Err(QueueError::Full));
        queue.close();
        let mut batch = Vec::new();
        assert!(queue.take_batch(10, Duration::ZERO, &mut batch));
        assert_eq!(batch.len(), 2);
        batch.clear();
        assert!(!queue.take_batch(10, Duration::ZERO, &mut batch));
        assert_eq!(queue.push(ping_job().0), Err(QueueError::Closed));
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_the_maximum() {
        let queue = Queue::new(10);
        for _ in 0..5 {
            queue.push(ping_job().0).unwrap();
        }
        let mut batch = Vec::new();
        queue.take_batch(3, Duration::ZERO, &mut batch);
        assert_eq!(batch.len(), 3);
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn a_reply_wakes_the_waiting_connection() {
        let slot = Arc::new(ReplySlot::default());
        let waiter = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || slot.wait())
        };
        std::thread::sleep(Duration::from_millis(20));
        slot.put(Outcome::Ready);
        assert_eq!(waiter.join().unwrap(), Outcome::Ready);
    }
}
