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
//! connection is given back; they also reconnect idle connections. Whoever stores a batch
//! hands each job its outcome (plain data, through the [`ReplyTo`] it carries) right after the
//! commit; the connection thread waiting for it writes the answer. The systemd watchdog is
//! pinged when a connection comes back from a batch
//! and while one is idle, so the pings stop when every connection is stuck in the database.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::sync::{lock, wait_timeout};

use crate::db::{Counts, Database, DbConnection, Health, Outcome, Saved, Task};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::reply::{Reply, ReplyTo};

/// A task and where its outcome goes, decided by the connection that made it.
#[derive(Debug)]
pub struct Job {
    pub task: Task,
    pub reply: ReplyTo,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    Full,
    Closed,
}

/// What became of a submitted task.
// Moved once per request, on the stack: boxing the lead would cost an allocation instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Submitted {
    /// Queued: its outcome arrives in the connection's [`Reply`].
    Queued,
    /// A database connection was idle and nothing waited: the submitting thread stores the task
    /// itself with [`Pipeline::store_lead`].
    Lead(Lead),
}

/// A task its own connection thread stores, with the connection it took.
#[derive(Debug)]
pub struct Lead {
    connection: DbConnection,
    task: Task,
    reply: Arc<Reply>,
}

#[derive(Debug)]
struct State {
    jobs: VecDeque<Job>,
    /// The slots of connection threads storing their own task, for a stop that cannot wait.
    leading: Vec<Arc<Reply>>,
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
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
    /// Set by a stop that cannot wait any longer: waiting connection threads answer 503.
    pub abandoned: AtomicBool,
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
    pub fn new(
        db: Arc<Database>,
        queue_capacity: usize,
        max_batch: usize,
        metrics: Arc<Metrics>,
        notifier: Arc<Notifier>,
    ) -> Pipeline {
        Pipeline {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(queue_capacity),
                leading: Vec::new(),
                idle: Vec::new(),
                closed: false,
                waiting: 0,
                committing: 0,
            }),
            work: Condvar::new(),
            capacity: queue_capacity,
            max_batch: max_batch.max(1),
            db,
            metrics,
            notifier,
            abandoned: AtomicBool::new(false),
        }
    }

    /// Leaves the task to the submitting thread when a database connection is idle, no job
    /// waits and no batch is being stored ([`Submitted::Lead`]); otherwise queues it (behind the
    /// waiting ones), its outcome to go to `reply`, and wakes a worker thread if a batch may
    /// start now (`may_start_batch`).
    pub fn submit(&self, task: Task, reply: &Arc<Reply>) -> Result<Submitted, QueueError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(QueueError::Closed);
        }
        if state.jobs.is_empty() && state.committing == 0 {
            if let Some(connection) = state.idle.pop() {
                state.committing += 1;
                state.leading.push(Arc::clone(reply));
                return Ok(Submitted::Lead(Lead {
                    connection,
                    task,
                    reply: Arc::clone(reply),
                }));
            }
        }
        if state.jobs.len() >= self.capacity {
            drop(state);
            self.metrics.record_queue_full();
            return Err(QueueError::Full);
        }
        state.jobs.push_back(Job {
            task,
            reply: ReplyTo::new(reply),
        });
        self.metrics
            .queued
            .store(state.jobs.len(), Ordering::Relaxed);
        let wake = state.waiting > 0 && self.may_start_batch(&state);
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Ok(Submitted::Queued)
    }

    /// Stores a task its own connection thread leads with (see [`Submitted::Lead`]).
    pub fn store_lead(&self, lead: Lead) -> Outcome {
        let Lead {
            mut connection,
            task,
            reply,
        } = lead;
        let mut outcomes = Vec::with_capacity(1);
        self.store_with(&mut connection, std::slice::from_ref(&task), &mut outcomes);
        {
            let mut state = lock(&self.state);
            state.leading.retain(|r| !Arc::ptr_eq(r, &reply));
        }
        self.give_back(connection, true);
        outcomes.pop().unwrap_or(Outcome::Internal)
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
                        batch.replies.push(job.reply);
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

    /// For a stop that cannot wait any longer (after [`Pipeline::close`]): sets the abandon
    /// flag (connection threads waiting for a batch in the database answer 503), abandons every
    /// job still queued (none reached the database), and returns how many there were with the
    /// slots of connection threads storing their own task (the caller answers for those stuck).
    pub fn abandon(&self) -> (usize, Vec<Arc<Reply>>) {
        self.abandoned.store(true, Ordering::SeqCst);
        let (jobs, leading): (Vec<Job>, Vec<Arc<Reply>>) = {
            let mut state = lock(&self.state);
            self.metrics.queued.store(0, Ordering::Relaxed);
            (state.jobs.drain(..).collect(), state.leading.clone())
        };
        let n = jobs.len();
        for job in jobs {
            job.reply.abandon();
        }
        (n, leading)
    }

    /// Whether the database works, as the connections found it.
    pub fn health(&self) -> &Health {
        &self.db.health
    }

    /// Closes the database connections (after the worker threads stopped).
    pub fn disconnect(&self) {
        lock(&self.state).idle.clear();
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

    /// Stores a batch, gives the connection back, then hands every job its outcome (also when
    /// storing panics): the next batch need not wait for the connection threads.
    fn store_batch(&self, mut connection: DbConnection, batch: &mut Batch) {
        self.store_with(&mut connection, &batch.tasks, &mut batch.outcomes);
        self.give_back(connection, true);
        // One outcome per job in order; none (only after a panic) means 500.
        let mut outcomes = batch.outcomes.drain(..);
        for reply in batch.replies.drain(..) {
            reply.send(outcomes.next().unwrap_or(Outcome::Internal));
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
    replies: Vec<ReplyTo>,
    outcomes: Vec<Outcome>,
}

impl Batch {
    fn with_capacity(n: usize) -> Batch {
        Batch {
            tasks: Vec::with_capacity(n),
            replies: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use common::config::DatabaseConfig;

    fn ping(pipeline: &Pipeline) -> Result<Submitted, QueueError> {
        pipeline.submit(Task::Ping, &Arc::new(Reply::default()))
    }

    fn pipeline(capacity: usize, max_batch: usize) -> Pipeline {
        let db = Database::new(DatabaseConfig::default());
        Pipeline::new(
            Arc::new(db),
            capacity,
            max_batch,
            Arc::new(Metrics::default()),
            Arc::new(Notifier::disabled()),
        )
    }

    /// An idle connection that is not connected: enough to hand out batches.
    fn idle_connection(pipeline: &Pipeline) -> DbConnection {
        DbConnection::new(0, Arc::clone(&pipeline.db))
    }

    #[test]
    fn the_queue_refuses_jobs_past_its_capacity_and_after_close() {
        let pipeline = pipeline(2, 10);
        assert!(matches!(ping(&pipeline), Ok(Submitted::Queued)));
        assert!(matches!(ping(&pipeline), Ok(Submitted::Queued)));
        assert!(matches!(ping(&pipeline), Err(QueueError::Full)));
        pipeline.close();
        pipeline.give_back(idle_connection(&pipeline), false);
        let mut batch = Batch::with_capacity(0);
        assert!(matches!(
            pipeline.next_work(Duration::ZERO, &mut batch),
            Work::Batch(_)
        ));
        assert_eq!(batch.tasks.len(), 2);
        batch.tasks.clear();
        batch.replies.clear();
        assert!(matches!(
            pipeline.next_work(Duration::ZERO, &mut batch),
            Work::Stop
        ));
        assert!(matches!(ping(&pipeline), Err(QueueError::Closed)));
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_the_maximum() {
        let pipeline = pipeline(10, 3);
        for _ in 0..5 {
            ping(&pipeline).unwrap();
        }
        pipeline.give_back(idle_connection(&pipeline), false);
        let mut batch = Batch::with_capacity(0);
        let work = pipeline.next_work(Duration::ZERO, &mut batch);
        assert!(matches!(work, Work::Batch(_)));
        assert_eq!(batch.tasks.len(), 3);
        assert_eq!(pipeline.len(), 2);
    }

    #[test]
    fn a_job_that_finds_a_connection_idle_and_nobody_waiting_is_stored_by_its_own_thread() {
        let pipeline = pipeline(10, 3);
        pipeline.give_back(idle_connection(&pipeline), false);
        let Ok(Submitted::Lead(lead)) = ping(&pipeline) else {
            panic!("an idle connection must be taken by the submitting thread");
        };
        let worker = lead.connection;
        assert!(
            matches!(ping(&pipeline), Ok(Submitted::Queued)),
            "no connection left idle: queued"
        );
        pipeline.give_back(worker, true);
        assert!(
            matches!(ping(&pipeline), Ok(Submitted::Queued)),
            "jobs are waiting: queued behind them, for a worker thread"
        );
        assert_eq!(pipeline.len(), 2);
    }

    #[test]
    fn while_a_batch_is_stored_another_starts_only_for_two_jobs_or_more() {
        let pipeline = pipeline(10, 8);
        pipeline.give_back(idle_connection(&pipeline), false);
        pipeline.give_back(idle_connection(&pipeline), false);
        let Ok(Submitted::Lead(Lead {
            connection: first, ..
        })) = ping(&pipeline)
        else {
            panic!("nothing is being stored: the job takes an idle connection");
        };
        // A connection is idle, but a commit is in progress: one job waits to share the next.
        assert!(matches!(ping(&pipeline), Ok(Submitted::Queued)));
        let mut batch = Batch::with_capacity(0);
        match pipeline.next_work(Duration::ZERO, &mut batch) {
            Work::Batch(_) => panic!("a single job must wait for the commit in progress"),
            // The idle test connection is not connected: a worker would reconnect it.
            Work::Maintain(idle) => pipeline.give_back(idle, false),
            Work::Nothing | Work::Stop => {}
        }
        assert!(batch.tasks.is_empty());
        // Two waiting: worth a commit of their own.
        assert!(matches!(ping(&pipeline), Ok(Submitted::Queued)));
        let Work::Batch(second) = pipeline.next_work(Duration::ZERO, &mut batch) else {
            panic!("two jobs waiting start a batch next to the one in progress");
        };
        assert_eq!(batch.tasks.len(), 2);
        batch.tasks.clear();
        batch.replies.clear();
        // Back to nothing in progress: a single job is stored at once again.
        pipeline.give_back(first, true);
        pipeline.give_back(second, true);
        assert!(matches!(ping(&pipeline), Ok(Submitted::Lead(_))));
    }
}
