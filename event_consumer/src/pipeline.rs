//! The hand-off between connections and the database: a bounded queue of validated events and
//! a fixed set of database connections, each a `Worker` (one [`Store`], one PostgreSQL
//! connection) that stores one batch at a time.
//!
//! Group commit: whoever takes an idle connection takes every job waiting at that moment (up to
//! `max_batch`) and stores them with one statement and one commit. Nothing waits for a batch to
//! fill: at low load a batch is one event; under load, events pile up while every connection is
//! in a commit and the next batch takes them all, so the cost of a commit (an fsync) is shared.
//! While one batch is being stored, another starts only when at least two jobs wait: a lone
//! event waits for the commit in progress and shares the next one, instead of paying a commit
//! of its own on a second connection (measured with 8 and 64 clients: about 20 % more events
//! per second and 20 % less CPU per event, in the consumer and in PostgreSQL alike).
//!
//! Who stores a batch: a connection thread that finds a database connection idle, no job
//! waiting and no batch being stored stores its own event itself, so at low load a request
//! costs no hand-off to another thread and back (two context switches; measured at one client:
//! about 15 us less CPU and 10 % more requests per second). Otherwise the job is queued, and the worker threads (one per
//! connection) store what is queued as soon as a connection is given back; they also reconnect
//! idle connections. The systemd watchdog is pinged when a connection comes back from a batch
//! and while one is idle, so the pings stop when every connection is stuck in the database.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// Answers a job's client straight from the thread that stored the job: the client does not
/// wait for its connection thread to be woken and scheduled (on a busy 2-core machine, tens of
/// microseconds per request), and that thread need not wait for the outcome at all.
pub trait EarlyAnswer: Send + Sync + std::fmt::Debug {
    /// Called once per job, with its outcome, on the storing thread. Must not block. True when
    /// it answered the job: the outcome is then not handed to the slot (nobody waits there).
    fn answer(&self, outcome: &Outcome) -> bool;
}

/// Where a connection waits for the outcome of its job. One per connection, reused for each of
/// its requests, so the request path allocates nothing for the hand-off.
#[derive(Debug, Default)]
pub struct ReplySlot {
    value: Mutex<Option<Outcome>>,
    ready: Condvar,
    early: Option<Arc<dyn EarlyAnswer>>,
}

impl ReplySlot {
    /// A slot whose outcomes are first passed to `early` on the thread that stored the job.
    pub fn with_early_answer(early: Arc<dyn EarlyAnswer>) -> ReplySlot {
        ReplySlot {
            early: Some(early),
            ..ReplySlot::default()
        }
    }

    /// Hands the outcome over: to the early answer if it takes it, else to the waiting thread.
    fn put(&self, outcome: Outcome) {
        if let Some(early) = &self.early {
            match catch_unwind(AssertUnwindSafe(|| early.answer(&outcome))) {
                Ok(true) => return,
                Ok(false) => {}
                // A panic there must not keep the outcome from a waiting thread.
                Err(_) => log::error!("panic while answering early; answered by the slot"),
            }
        }
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
struct State {
    jobs: VecDeque<Job>,
    /// Database connections not in use.
    idle: Vec<Worker>,
    closed: bool,
    /// Worker threads blocked waiting for work; a wake-up is sent only when one is waiting.
    waiting: usize,
    /// Connections out storing a batch.
    committing: usize,
}

/// What a worker thread does next.
enum Work {
    /// Store this batch with this connection.
    Batch(Worker),
    /// Reconnect this idle connection, whose database was down.
    Reconnect(Worker),
    Nothing,
    /// The queue is closed and empty.
    Stop,
}

/// What every connection needs to know about the database: where it is and whether it is up.
#[derive(Debug)]
struct Db {
    config: DatabaseConfig,
    metrics: Arc<Metrics>,
    /// Bumped whenever a worker finds the database gone, so the others check their
    /// connections before trusting them (after a database restart every connection is dead).
    failure_epoch: AtomicU64,
    /// Whether the database is known to be down, so the outage is logged once, not per request.
    down: AtomicBool,
}

impl Db {
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

/// The queue, the database connections and the worker threads' shared state.
#[derive(Debug)]
pub struct Pipeline {
    state: Mutex<State>,
    /// Signalled when a job is queued or a connection given back while jobs wait.
    work: Condvar,
    capacity: usize,
    max_batch: usize,
    db: Arc<Db>,
    notifier: Arc<Notifier>,
}

/// Reconnect backoff of an idle worker whose database is down: 0.1 s doubling to 5 s.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// While a batch is being stored, another one starts only once this many jobs wait.
const OVERLAP_MIN_BATCH: usize = 2;
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
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(queue_capacity),
                idle: Vec::new(),
                closed: false,
                waiting: 0,
                committing: 0,
            }),
            work: Condvar::new(),
            capacity: queue_capacity,
            max_batch: max_batch.max(1),
            db: Arc::new(Db {
                config: database,
                metrics,
                failure_epoch: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
            notifier,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the job and returns its outcome: right here when a database connection is idle,
    /// otherwise through the queue and a worker thread. A full or closed queue is refused at
    /// once.
    pub fn submit(&self, job: Job, reply: &ReplySlot) -> Result<Outcome, QueueError> {
        self.submit_answered_early(job)?;
        Ok(reply.wait())
    }

    /// Like [`Pipeline::submit`] for a job whose answer is sent by its slot's [`EarlyAnswer`]:
    /// returns once the job is stored (when this thread found a connection idle) or queued.
    pub fn submit_answered_early(&self, job: Job) -> Result<(), QueueError> {
        if let Some((worker, mut batch)) = self.enqueue_or_lead(job)? {
            self.store_batch(worker, &mut batch);
        }
        Ok(())
    }

    /// With a connection idle, no job waiting and no batch being stored: takes the connection and
    /// returns it with a batch of this one job. Otherwise queues the job (behind the waiting
    /// ones) and wakes a worker thread if a batch may start now (see `may_start_batch`).
    fn enqueue_or_lead(&self, job: Job) -> Result<Option<(Worker, Vec<Job>)>, QueueError> {
        let mut state = self.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        if state.jobs.is_empty() && state.committing == 0 {
            if let Some(worker) = state.idle.pop() {
                state.committing += 1;
                return Ok(Some((worker, vec![job])));
            }
        }
        if state.jobs.len() >= self.capacity {
            return Err(QueueError::Full);
        }
        state.jobs.push_back(job);
        let wake = state.waiting > 0 && self.may_start_batch(&state);
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Ok(None)
    }

    /// Returns a connection; wakes a worker thread when jobs queued up meanwhile. A connection
    /// coming back is proof of life for the systemd watchdog.
    fn give_back(&self, worker: Worker, from_batch: bool) {
        self.notifier.watchdog_tick();
        let mut state = self.lock();
        state.idle.push(worker);
        if from_batch {
            state.committing -= 1;
        }
        let wake = !state.jobs.is_empty() && state.waiting > 0;
        drop(state);
        if wake {
            self.work.notify_one();
        }
    }

    /// Waits up to `wait` for queued jobs and an idle connection; moves up to `max_batch` jobs
    /// into `batch`.
    fn next_work(&self, wait: Duration, batch: &mut Vec<Job>) -> Work {
        let mut state = self.lock();
        let mut waited = false;
        loop {
            if self.may_start_batch(&state) {
                if let Some(worker) = state.idle.pop() {
                    state.committing += 1;
                    let n = state.jobs.len().min(self.max_batch);
                    batch.extend(state.jobs.drain(..n));
                    self.db
                        .metrics
                        .queued
                        .store(state.jobs.len(), Ordering::Relaxed);
                    return Work::Batch(worker);
                }
            } else if state.closed {
                return Work::Stop;
            }
            if waited {
                let now = Instant::now();
                let due = state
                    .idle
                    .iter()
                    .position(|w| w.store.is_none() && now >= w.next_connect);
                return match due {
                    Some(i) => Work::Reconnect(state.idle.swap_remove(i)),
                    None => Work::Nothing,
                };
            }
            state.waiting += 1;
            state = self
                .work
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.waiting -= 1;
            waited = true;
        }
    }

    /// Whether queued jobs should start a batch now (given an idle connection): always when no
    /// batch is being stored, otherwise only once at least `OVERLAP_MIN_BATCH` wait. A second
    /// commit started for a single event costs PostgreSQL a whole commit (an fsync) for one row,
    /// while waiting for the commit in progress lets that event share the next one.
    fn may_start_batch(&self, state: &State) -> bool {
        !state.jobs.is_empty() && (state.committing == 0 || state.jobs.len() >= OVERLAP_MIN_BATCH)
    }

    /// Jobs waiting for a connection.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses new jobs; the worker threads store what is queued, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    /// Closes the database connections (after the worker threads stopped).
    pub fn disconnect(&self) {
        self.lock().idle.clear();
    }

    /// A worker thread: opens one database connection, then stores queued batches until the
    /// queue is closed and drained. Its connection is shared: any worker thread or connection
    /// thread may use it while it is idle.
    pub fn run_worker(&self, id: usize) {
        let mut worker = Worker::new(id, Arc::clone(&self.db));
        worker.connect();
        self.give_back(worker, false);
        let tick = self
            .notifier
            .watchdog_tick_interval()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let work = self.next_work(tick, &mut batch);
            match work {
                Work::Batch(worker) => self.store_batch(worker, &mut batch),
                Work::Reconnect(mut worker) => {
                    worker.idle();
                    self.give_back(worker, false);
                }
                // Alive as long as some connection is not stuck in the database: when every one
                // is (a lock, a hung server), the pings stop and systemd restarts the service.
                Work::Nothing => {
                    if !self.lock().idle.is_empty() {
                        self.notifier.watchdog_tick();
                    }
                }
                Work::Stop => break,
            }
        }
        log::debug!("worker thread {id}: stopped");
    }

    /// Stores a batch, gives the connection back, then answers every job of the batch (also
    /// when storing panics): the next batch need not wait for the answers to be sent.
    fn store_batch(&self, mut worker: Worker, batch: &mut Vec<Job>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        let result = catch_unwind(AssertUnwindSafe(|| worker.process(batch, &mut outcomes)));
        if result.is_err() {
            log::error!(
                "worker {}: panic while storing a batch of {}; answered 500",
                worker.id,
                batch.len()
            );
            // A panic may leave the connection mid-protocol: start over with a new one.
            worker.store = None;
            outcomes.clear();
        }
        self.give_back(worker, true);
        // One outcome per job in order; none (only after a panic) means 500.
        let mut outcomes = outcomes.into_iter();
        for job in batch.drain(..) {
            job.reply()
                .put(outcomes.next().unwrap_or(Outcome::Internal));
        }
    }
}

/// One database connection and its reconnect state.
#[derive(Debug)]
struct Worker {
    id: usize,
    db: Arc<Db>,
    store: Option<Store>,
    store_epoch: u64,
    last_used: Instant,
    next_connect: Instant,
    reconnect_delay: Duration,
}

impl Worker {
    fn new(id: usize, db: Arc<Db>) -> Worker {
        Worker {
            id,
            db,
            store: None,
            store_epoch: 0,
            last_used: Instant::now(),
            next_connect: Instant::now(),
            reconnect_delay: RECONNECT_MIN,
        }
    }

    fn connect(&mut self) -> bool {
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

    /// Between batches: reconnect with backoff when disconnected.
    fn idle(&mut self) {
        if self.store.is_none() && Instant::now() >= self.next_connect {
            self.connect();
        }
    }

    /// A connection fit for a batch: checked first when another worker saw the database fail
    /// since it was opened, or when it sat unused for a while.
    fn ready_store(&mut self) -> Option<&mut Store> {
        let epoch = self.db.failure_epoch.load(Ordering::Relaxed);
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

    /// Stores the batch and pushes one outcome per job, in order, onto `outcomes`.
    fn process(&mut self, batch: &[Job], outcomes: &mut Vec<Outcome>) {
        let Some(_) = self.ready_store() else {
            outcomes.extend(batch.iter().map(|_| Outcome::Unavailable));
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
                    match job {
                        Job::Store { .. } => saved
                            .next()
                            .map(Outcome::Saved)
                            .unwrap_or(Outcome::Internal),
                        Job::Ping { .. } => Outcome::Ready,
                    }
                }));
            }
            Err(error) => {
                let outcome = match &error {
                    StoreError::Inconsistent(_) => {
                        log::error!("worker {}: {error}", self.id);
                        Outcome::Internal
                    }
                    StoreError::Failed(_) => {
                        self.db.metrics.record_db_error();
                        log::error!("worker {}: {error}", self.id);
                        Outcome::Unavailable
                    }
                    StoreError::Unavailable(_) => Outcome::Unavailable,
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

    fn pipeline(capacity: usize, max_batch: usize) -> Pipeline {
        Pipeline::new(
            DatabaseConfig::default(),
            capacity,
            max_batch,
            Arc::new(Metrics::default()),
            Arc::new(Notifier::disabled()),
        )
    }

    /// An idle connection that is not connected: enough to hand out batches.
    fn idle_connection(pipeline: &Pipeline) -> Worker {
        Worker::new(0, Arc::clone(&pipeline.db))
    }

    #[test]
    fn the_queue_refuses_jobs_past_its_capacity_and_after_close() {
        let pipeline = pipeline(2, 10);
        assert!(matches!(pipeline.enqueue_or_lead(ping_job().0), Ok(None)));
        assert!(matches!(pipeline.enqueue_or_lead(ping_job().0), Ok(None)));
        assert!(matches!(
            pipeline.enqueue_or_lead(ping_job().0),
            Err(QueueError::Full)
        ));
        pipeline.close();
        pipeline.give_back(idle_connection(&pipeline), false);
        let mut batch = Vec::new();
        assert!(matches!(
            pipeline.next_work(Duration::ZERO, &mut batch),
            Work::Batch(_)
        ));
        assert_eq!(batch.len(), 2);
        batch.clear();
        assert!(matches!(
            pipeline.next_work(Duration::ZERO, &mut batch),
            Work::Stop
        ));
        assert!(matches!(
            pipeline.enqueue_or_lead(ping_job().0),
            Err(QueueError::Closed)
        ));
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_the_maximum() {
        let pipeline = pipeline(10, 3);
        for _ in 0..5 {
            pipeline.enqueue_or_lead(ping_job().0).unwrap();
        }
        pipeline.give_back(idle_connection(&pipeline), false);
        let mut batch = Vec::new();
        let work = pipeline.next_work(Duration::ZERO, &mut batch);
        assert!(matches!(work, Work::Batch(_)));
        assert_eq!(batch.len(), 3);
        assert_eq!(pipeline.len(), 2);
    }

    #[test]
    fn a_job_that_finds_a_connection_idle_and_nobody_waiting_is_stored_by_its_own_thread() {
        let pipeline = pipeline(10, 3);
        pipeline.give_back(idle_connection(&pipeline), false);
        let (own, own_slot) = ping_job();
        let Ok(Some((worker, batch))) = pipeline.enqueue_or_lead(own) else {
            panic!("an idle connection must be taken by the submitting thread");
        };
        assert_eq!(batch.len(), 1);
        assert!(std::ptr::eq(batch[0].reply(), &*own_slot));
        assert!(
            matches!(pipeline.enqueue_or_lead(ping_job().0), Ok(None)),
            "no connection left idle: queued"
        );
        pipeline.give_back(worker, true);
        assert!(
            matches!(pipeline.enqueue_or_lead(ping_job().0), Ok(None)),
            "jobs are waiting: queued behind them, for a worker thread"
        );
        assert_eq!(pipeline.len(), 2);
    }

    #[test]
    fn while_a_batch_is_stored_another_starts_only_for_two_jobs_or_more() {
        let pipeline = pipeline(10, 8);
        pipeline.give_back(idle_connection(&pipeline), false);
        pipeline.give_back(idle_connection(&pipeline), false);
        let Ok(Some((first, _))) = pipeline.enqueue_or_lead(ping_job().0) else {
            panic!("nothing is being stored: the job takes an idle connection");
        };
        // A connection is idle, but a commit is in progress: one job waits to share the next.
        assert!(matches!(pipeline.enqueue_or_lead(ping_job().0), Ok(None)));
        let mut batch = Vec::new();
        match pipeline.next_work(Duration::ZERO, &mut batch) {
            Work::Batch(_) => panic!("a single job must wait for the commit in progress"),
            // The idle test connection is not connected: a worker would reconnect it.
            Work::Reconnect(idle) => pipeline.give_back(idle, false),
            Work::Nothing | Work::Stop => {}
        }
        assert!(batch.is_empty());
        // Two waiting: worth a commit of their own.
        assert!(matches!(pipeline.enqueue_or_lead(ping_job().0), Ok(None)));
        let Work::Batch(second) = pipeline.next_work(Duration::ZERO, &mut batch) else {
            panic!("two jobs waiting start a batch next to the one in progress");
        };
        assert_eq!(batch.len(), 2);
        batch.clear();
        // Back to nothing in progress: a single job is stored at once again.
        pipeline.give_back(first, true);
        pipeline.give_back(second, true);
        assert!(matches!(
            pipeline.enqueue_or_lead(ping_job().0),
            Ok(Some(_))
        ));
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
