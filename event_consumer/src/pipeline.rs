//! The hand-off between connections and the database: a bounded queue of validated events and
//! a fixed set of database connections ([`DbConnection`], one PostgreSQL connection each), each
//! storing one batch at a time.
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
//! answers its jobs right after the commit, each through the [`Answer`] it carries. The systemd watchdog is pinged when a connection comes back from a batch
//! and while one is idle, so the pings stop when every connection is stuck in the database.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::Event;

use crate::answer::Answer;
use crate::db_connection::{Database, DbConnection};
use crate::notify::Notifier;
use crate::store::Saved;

/// What the pipeline found for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Saved(Saved),
    /// A batch request's items, in order (all stored in one transaction).
    SavedBatch(Vec<Saved>),
    /// The database answered a ping.
    Ready,
    /// The database cannot take it now: answer 503 and let the client retry.
    Unavailable,
    /// A bug (a panic, an answer that does not match): answer 500.
    Internal,
}

/// What a job asks of the database.
#[derive(Debug)]
pub enum Task {
    Store {
        event: Event,
        idempotency_key: Option<String>,
    },
    /// Store every item, in the same transaction, or none.
    StoreBatch {
        items: Vec<common::batch::BatchItem>,
    },
    /// Readiness check: does the database answer?
    Ping,
}

impl Task {
    /// Events it stores: what counts against [`MAX_BATCH`].
    pub fn events(&self) -> usize {
        match self {
            Task::Store { .. } => 1,
            Task::StoreBatch { items } => items.len(),
            Task::Ping => 0,
        }
    }
}

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
    pub fn new(
        db: Arc<Database>,
        queue_capacity: usize,
        max_batch: usize,
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
            notifier,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the job right here when a database connection is idle (and answers it), or
    /// queues it for a worker thread. A full or closed queue gives the job's answer back.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        if let Some((connection, mut batch)) = self.enqueue_or_lead(job)? {
            self.store_batch(connection, &mut batch);
        }
        Ok(())
    }

    /// With a connection idle, no job waiting and no batch being stored: takes the connection
    /// and returns it with a batch of this one job. Otherwise queues the job (behind the
    /// waiting ones) and wakes a worker thread if a batch may start now (`may_start_batch`).
    fn enqueue_or_lead(&self, job: Job) -> Result<Option<(DbConnection, Vec<Job>)>, Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused {
                error: QueueError::Closed,
                answer: job.answer,
            });
        }
        if state.jobs.is_empty() && state.committing == 0 {
            if let Some(connection) = state.idle.pop() {
                state.committing += 1;
                return Ok(Some((connection, vec![job])));
            }
        }
        if state.jobs.len() >= self.capacity {
            drop(state);
            self.db.metrics().record_queue_full();
            return Err(Refused {
                error: QueueError::Full,
                answer: job.answer,
            });
        }
        state.jobs.push_back(job);
        self.db
            .metrics()
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
        let mut state = self.lock();
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
    fn next_work(&self, wait: Duration, batch: &mut Vec<Job>) -> Work {
        let mut state = self.lock();
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
                    batch.extend(state.jobs.drain(..n));
                    self.db
                        .metrics()
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

    /// Takes every job still waiting (after [`Pipeline::close`]) and answers it 503: none of
    /// them reached the database. Returns how many there were.
    pub fn refuse_waiting(&self) -> usize {
        let jobs: Vec<Job> = {
            let mut state = self.lock();
            let jobs = state.jobs.drain(..).collect();
            self.db.metrics().queued.store(0, Ordering::Relaxed);
            jobs
        };
        let n = jobs.len();
        for job in jobs {
            let _ = job.answer.send(&crate::routes::shutting_down());
        }
        n
    }

    /// Whether the database works, as the connections found it.
    pub fn health(&self) -> &crate::db_health::Health {
        &self.db.health
    }

    /// Closes the database connections (after the worker threads stopped).
    pub fn disconnect(&self) {
        self.lock().idle.clear();
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
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let _ = self.db.health.remind(Instant::now());
            match self.next_work(tick, &mut batch) {
                Work::Batch(connection) => self.store_batch(connection, &mut batch),
                Work::Maintain(mut connection) => {
                    connection.maintain();
                    self.give_back(connection, false);
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
    fn store_batch(&self, mut connection: DbConnection, batch: &mut Vec<Job>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        let result = catch_unwind(AssertUnwindSafe(|| {
            connection.process(batch, &mut outcomes)
        }));
        if result.is_err() {
            log::error!(
                "db connection {}: panic while storing a batch of {}; answered 500",
                connection.id,
                batch.len()
            );
            // A panic may leave the connection mid-protocol: start over with a new one.
            connection.discard();
            outcomes.clear();
        }
        self.give_back(connection, true);
        // One outcome per job in order; none (only after a panic) means 500.
        let mut outcomes = outcomes.into_iter();
        for job in batch.drain(..) {
            job.answer
                .send_outcome(&outcomes.next().unwrap_or(JobOutcome::Internal));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{TcpListener, TcpStream};
    use std::sync::OnceLock;

    use common::config::DatabaseConfig;

    use crate::http::{ResponseFraming, Writer};
    use crate::metrics::{Metrics, Route};

    /// The writing half of one loopback connection that every test job answers on; its client
    /// end stays open (and unread) for the whole test process.
    fn test_writer() -> &'static Arc<Writer> {
        static WRITER: OnceLock<(TcpStream, Arc<Writer>)> = OnceLock::new();
        &WRITER
            .get_or_init(|| {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (server, _) = listener.accept().unwrap();
                let writer = Arc::new(Writer::new(Arc::new(server), Duration::from_secs(1)));
                (client, writer)
            })
            .1
    }

    fn ping_job() -> Job {
        let metrics = Arc::new(Metrics::default());
        Job {
            task: Task::Ping,
            answer: Answer::new(
                test_writer(),
                ResponseFraming::CLOSING,
                Route::Readyz,
                &metrics,
            ),
        }
    }

    fn pipeline(capacity: usize, max_batch: usize) -> Pipeline {
        let db = Database::new(DatabaseConfig::default(), Arc::new(Metrics::default()));
        Pipeline::new(
            Arc::new(db),
            capacity,
            max_batch,
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
        assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
        assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
        assert!(matches!(
            pipeline.enqueue_or_lead(ping_job()),
            Err(Refused {
                error: QueueError::Full,
                ..
            })
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
            pipeline.enqueue_or_lead(ping_job()),
            Err(Refused {
                error: QueueError::Closed,
                ..
            })
        ));
    }

    #[test]
    fn a_batch_takes_what_is_waiting_up_to_the_maximum() {
        let pipeline = pipeline(10, 3);
        for _ in 0..5 {
            pipeline.enqueue_or_lead(ping_job()).unwrap();
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
        let Ok(Some((worker, batch))) = pipeline.enqueue_or_lead(ping_job()) else {
            panic!("an idle connection must be taken by the submitting thread");
        };
        assert_eq!(batch.len(), 1);
        assert!(
            matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)),
            "no connection left idle: queued"
        );
        pipeline.give_back(worker, true);
        assert!(
            matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)),
            "jobs are waiting: queued behind them, for a worker thread"
        );
        assert_eq!(pipeline.len(), 2);
    }

    #[test]
    fn while_a_batch_is_stored_another_starts_only_for_two_jobs_or_more() {
        let pipeline = pipeline(10, 8);
        pipeline.give_back(idle_connection(&pipeline), false);
        pipeline.give_back(idle_connection(&pipeline), false);
        let Ok(Some((first, _))) = pipeline.enqueue_or_lead(ping_job()) else {
            panic!("nothing is being stored: the job takes an idle connection");
        };
        // A connection is idle, but a commit is in progress: one job waits to share the next.
        assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
        let mut batch = Vec::new();
        match pipeline.next_work(Duration::ZERO, &mut batch) {
            Work::Batch(_) => panic!("a single job must wait for the commit in progress"),
            // The idle test connection is not connected: a worker would reconnect it.
            Work::Maintain(idle) => pipeline.give_back(idle, false),
            Work::Nothing | Work::Stop => {}
        }
        assert!(batch.is_empty());
        // Two waiting: worth a commit of their own.
        assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(None)));
        let Work::Batch(second) = pipeline.next_work(Duration::ZERO, &mut batch) else {
            panic!("two jobs waiting start a batch next to the one in progress");
        };
        assert_eq!(batch.len(), 2);
        batch.clear();
        // Back to nothing in progress: a single job is stored at once again.
        pipeline.give_back(first, true);
        pipeline.give_back(second, true);
        assert!(matches!(pipeline.enqueue_or_lead(ping_job()), Ok(Some(_))));
    }
}
