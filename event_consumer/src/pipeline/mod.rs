//! The hand-off between connections and the database: a bounded queue of validated events and
//! a fixed set of database connections ([`DbConnection`], one PostgreSQL connection each), each
//! storing one batch at a time. It gives the database layer tasks and pairs the outcomes with
//! the requests that wait for them.
//!
//! Group commit: whoever takes an idle connection takes every job waiting at that moment (up to
//! [`MAX_BATCH`]) and stores them with one statement and one commit. Nothing waits for a batch to
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
//! about 15 us less CPU and 10 % more requests per second). Otherwise the job is queued, and
//! the worker threads (one per database connection) store what is queued as soon as a
//! connection is given back; they also reconnect idle connections. The database layer gets the
//! batch's tasks as plain data and returns one outcome each; whoever stored the batch then
//! answers each job right after the commit, through the [`Answer`] it carries (the connection
//! thread does not wait for it: it goes back to reading, see [`crate::answer`]). The systemd
//! watchdog is pinged when a connection comes back from a batch and while one is idle, so the
//! pings stop when every connection is stuck in the database.
//!
//! Deadlines: a request waits for the database at most `statement_timeout_seconds` + 0.5 s, queued
//! or in a batch, whatever the database does; the deadline thread (`deadline.rs`) answers 503 in
//! its place (see [`crate::deadlines`]). `/readyz` does not queue: it has a probe of its own
//! (`db/readiness.rs`).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::sync::{lock, wait_timeout};

use crate::answer::Answer;
use crate::db::{
    Counts, Database, DbConnection, Health, Outcome, Readiness, Saved, Task, READY_WAIT,
};
use crate::deadlines::InFlight;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::routes;

mod deadline;

/// A task and how its request is answered, decided by the connection that made it.
#[derive(Debug)]
pub struct Job {
    pub task: Task,
    pub answer: Answer,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    Full,
    Closed,
}

/// A job the queue did not take, given back so its request can be answered.
#[derive(Debug)]
pub struct Refused {
    pub error: QueueError,
    pub answer: Answer,
}

#[derive(Debug)]
struct State {
    jobs: VecDeque<Job>,
    /// Database connections not in use.
    idle: Vec<DbConnection>,
    closed: bool,
    /// Worker threads blocked waiting for work; a wake-up is sent only when one is waiting.
    waiting: usize,
    /// Connections out storing a batch.
    committing: usize,
}

/// What a worker thread does next.
enum Work {
    /// Store this batch with this connection.
    Batch(DbConnection),
    /// Reconnect this idle connection, or make the outage's next attempt with it.
    Maintain(DbConnection),
    Nothing,
    /// The queue is closed and empty.
    Stop,
}

/// The queue, the database connections and the worker threads' shared state.
#[derive(Debug)]
pub struct Pipeline {
    state: Mutex<State>,
    /// Signalled when a job is queued or a connection given back while jobs wait.
    work: Condvar,
    capacity: usize,
    max_batch: usize,
    db: Arc<Database>,
    /// The probe of `/readyz`, on a session of its own (not one of the batches').
    readiness: Readiness,
    /// The batches being stored and when their requests are due (see `deadlines.rs`).
    in_flight: InFlight,
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
}

/// While a batch is being stored, another one starts only once this many jobs wait.
const OVERLAP_MIN_BATCH: usize = 2;

/// Validated events waiting for a database connection; past it a fast 503. Four largest
/// batches' worth: it absorbs a slow commit, and no event waits behind more than a few.
pub const QUEUE_CAPACITY: usize = 1024;

/// Most events stored by one statement and one commit (group commit): large enough to share
/// an fsync among many events, small enough that one batch stays a short statement.
pub const MAX_BATCH: usize = 256;

impl Pipeline {
    /// `readiness` probes the same database as `db`.
    pub fn new(
        db: Arc<Database>,
        readiness: Readiness,
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
            db,
            readiness,
            in_flight: InFlight::default(),
            metrics,
            notifier,
        }
    }

    /// Stores the job right here when a database connection is idle (and answers it), or
    /// queues it for a worker thread. A full or closed queue gives the job's answer back.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        if let Some((mut connection, job)) = self.enqueue_or_lead(job)? {
            let mut outcomes = Vec::with_capacity(1);
            let watch = self.in_flight.watch(
                connection.id,
                std::slice::from_ref(&job.answer),
                self.db.answer_within(),
            );
            self.store_with(
                &mut connection,
                std::slice::from_ref(&job.task),
                &mut outcomes,
            );
            drop(watch);
            self.give_back(connection, true);
            job.answer
                .send_outcome(&outcomes.pop().unwrap_or(Outcome::Internal));
        }
        Ok(())
    }

    /// With a connection idle, no job waiting and no batch being stored: takes the connection
    /// and returns it with the job, for the submitting thread to store itself (no hand-off to
    /// another thread and back). Otherwise queues the job (behind the waiting ones) and wakes a
    /// worker thread if a batch may start now (`may_start_batch`).
    fn enqueue_or_lead(&self, job: Job) -> Result<Option<(DbConnection, Job)>, Refused> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(Refused {
                error: QueueError::Closed,
                answer: job.answer,
            });
        }
        if state.jobs.is_empty() && state.committing == 0 {
            if let Some(connection) = state.idle.pop() {
                state.committing += 1;
                return Ok(Some((connection, job)));
            }
        }
        if state.jobs.len() >= self.capacity {
            drop(state);
            self.metrics.record_queue_full();
            return Err(Refused {
                error: QueueError::Full,
                answer: job.answer,
            });
        }
        state.jobs.push_back(job);
        self.metrics
            .queued
            .store(state.jobs.len(), Ordering::Relaxed);
        let wake = state.waiting > 0 && self.may_start_batch(&state);
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Ok(None)
    }

    /// Returns a connection; wakes a worker thread when jobs queued up meanwhile. A connection
    /// coming back is proof of life for the systemd watchdog.
    fn give_back(&self, connection: DbConnection, from_batch: bool) {
        self.notifier.watchdog_tick();
        let mut state = lock(&self.state);
        state.idle.push(connection);
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
    fn next_work(&self, wait: Duration, batch: &mut Batch) -> Work {
        let mut state = lock(&self.state);
        let mut waited = false;
        loop {
            if self.may_start_batch(&state) {
                if let Some(connection) = state.idle.pop() {
                    state.committing += 1;
                    // Whole jobs only: a batch request is never split across transactions. At
                    // least one job, however many events it holds.
                    let mut n = 0;
                    let mut events = 0;
                    for job in &state.jobs {
                        let more = job.task.events().max(1);
                        if n > 0 && events + more > self.max_batch {
                            break;
                        }
                        n += 1;
                        events += more;
                    }
                    for job in state.jobs.drain(..n) {
                        batch.tasks.push(job.task);
                        batch.answers.push(job.answer);
                    }
                    self.metrics
                        .queued
                        .store(state.jobs.len(), Ordering::Relaxed);
                    return Work::Batch(connection);
                }
            } else if state.closed {
                return Work::Stop;
            }
            if waited {
                let now = Instant::now();
                let due = state.idle.iter().position(|c| c.wants_maintenance(now));
                return match due {
                    Some(i) => Work::Maintain(state.idle.swap_remove(i)),
                    None => Work::Nothing,
                };
            }
            state.waiting += 1;
            state = wait_timeout(&self.work, state, wait);
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
        lock(&self.state).jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses new jobs; the worker threads store what is queued, then stop.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.work.notify_all();
    }

    /// Takes every job still waiting (after [`Pipeline::close`]) and answers it 503: none of
    /// them reached the database. Returns how many there were.
    pub fn refuse_waiting(&self) -> usize {
        let jobs: Vec<Job> = {
            let mut state = lock(&self.state);
            self.metrics.queued.store(0, Ordering::Relaxed);
            state.jobs.drain(..).collect()
        };
        let n = jobs.len();
        for job in jobs {
            let _ = job.answer.send(&routes::shutting_down());
        }
        n
    }

    /// Whether the database works, as the connections found it.
    pub fn health(&self) -> &Health {
        &self.db.health
    }

    /// Whether a write would succeed now: the readiness probe, answered within
    /// [`READY_WAIT`] whatever the database does (see `db/readiness.rs`).
    pub fn check_ready(&self) -> Outcome {
        // A new session may work while every connection of the pipeline is stuck in a batch
        // the database never answered (its backends stopped): nothing can be stored then.
        let stalled = self.in_flight.stalled(Instant::now());
        let all_stalled = stalled > 0 && {
            let state = lock(&self.state);
            state.idle.is_empty() && stalled >= state.committing
        };
        if all_stalled {
            return Outcome::Unavailable;
        }
        let outcome = self.readiness.check(READY_WAIT);
        self.record(self.readiness.take_counts());
        outcome
    }

    /// Closes the database connections (after the worker threads stopped).
    pub fn disconnect(&self) {
        lock(&self.state).idle.clear();
        self.readiness.close();
    }

    /// A worker thread: opens one database connection, then stores queued batches until the
    /// queue is closed and drained. Its connection is shared: any worker thread or connection
    /// thread may use it while it is idle.
    pub fn run_worker(&self, id: usize) {
        let mut connection = DbConnection::new(id, Arc::clone(&self.db));
        connection.maintain();
        self.give_back(connection, false);
        let tick = self
            .notifier
            .watchdog_tick_interval()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut batch = Batch::with_capacity(self.max_batch);
        loop {
            let _ = self.db.health.remind(Instant::now());
            match self.next_work(tick, &mut batch) {
                Work::Batch(connection) => self.store_batch(connection, &mut batch),
                Work::Maintain(mut connection) => {
                    connection.maintain();
                    self.record(connection.take_counts());
                    self.give_back(connection, false);
                }
                // Alive as long as some connection is not stuck in the database: when every one
                // is (a lock, a hung server), the pings stop and systemd restarts the service.
                Work::Nothing => {
                    if !lock(&self.state).idle.is_empty() {
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
    fn store_batch(&self, mut connection: DbConnection, batch: &mut Batch) {
        let watch = self
            .in_flight
            .watch(connection.id, &batch.answers, self.db.answer_within());
        self.store_with(&mut connection, &batch.tasks, &mut batch.outcomes);
        drop(watch);
        self.give_back(connection, true);
        // One outcome per job in order; none (only after a panic) means 500.
        let mut outcomes = batch.outcomes.drain(..);
        for answer in batch.answers.drain(..) {
            answer.send_outcome(&outcomes.next().unwrap_or(Outcome::Internal));
        }
        drop(outcomes);
        batch.tasks.clear();
    }

    /// Stores `tasks` with `connection`, one outcome each onto `outcomes` (none after a panic,
    /// which discards the connection's session), and records what `/metrics` counts.
    fn store_with(
        &self,
        connection: &mut DbConnection,
        tasks: &[Task],
        outcomes: &mut Vec<Outcome>,
    ) {
        let result = catch_unwind(AssertUnwindSafe(|| connection.process(tasks, outcomes)));
        if result.is_err() {
            log::error!(
                "db connection {}: panic while storing a batch of {}; answered 500",
                connection.id,
                tasks.len()
            );
            // A panic may leave the connection mid-protocol: start over with a new one.
            connection.discard();
            outcomes.clear();
        }
        self.record(connection.take_counts());
        let (mut created, mut existing) = (0, 0);
        for outcome in outcomes.iter() {
            let saved = match outcome {
                Outcome::Saved(saved) => std::slice::from_ref(saved),
                Outcome::SavedBatch(saved) => saved.as_slice(),
                _ => &[],
            };
            for s in saved {
                match s {
                    Saved::Created(_) => created += 1,
                    Saved::Existing(_) => existing += 1,
                }
            }
        }
        if created + existing > 0 {
            self.metrics
                .record_commit((created + existing) as usize, created, existing);
        }
    }

    fn record(&self, counts: Counts) {
        for _ in 0..counts.connects {
            self.metrics.record_db_connect();
        }
        for _ in 0..counts.errors {
            self.metrics.record_db_error();
        }
    }
}

/// A worker thread's batch, its buffers kept from one batch to the next.
#[derive(Debug)]
struct Batch {
    tasks: Vec<Task>,
    answers: Vec<Answer>,
    outcomes: Vec<Outcome>,
}

impl Batch {
    fn with_capacity(n: usize) -> Batch {
        Batch {
            tasks: Vec::with_capacity(n),
            answers: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n),
        }
    }
}

#[cfg(test)]
mod tests;
