//! The readiness check of `/readyz`: would a write succeed now? Answered within
//! [`READY_WAIT`] whatever the database does.
//!
//! A load balancer gives a health check a couple of seconds (Kubernetes 1 s by default, HAProxy
//! `timeout check`, an ALB at least 2 s) and counts a late answer as a failure anyway, so an
//! answer that waits for a silent database is worse than a quick 503. The driver cannot bound
//! a call from outside (its reads block until the server answers or TCP gives up, and a
//! stopped server process whose kernel still acknowledges is never given up by TCP), so the
//! probe runs on a thread of its own, on a session of its own, and the request waits for it at
//! most [`READY_WAIT`]. At most one probe runs at a time: a check that finds one running waits
//! for that one's result, and while a probe hangs every check answers 503 after
//! [`READY_WAIT`] without starting another (no thread or session per check).
//!
//! The session is its own rather than one of the pipeline's: a hanging probe then holds no
//! connection that events need, and the probe never queues behind a batch. It is opened at the
//! first check (a consumer nobody asks for readiness opens none) and closed at shutdown. The
//! probe is the one of [`DbConnection`], under the same outage rules as any other use of the
//! database: during an outage at most one attempt per backoff interval, and its result starts
//! or ends the outage. A probe that is merely late does not start one: a late answer says the
//! database is slow, and the requests find out for themselves within `statement_timeout`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::logging::RateLimited;
use common::sync::{lock, wait_timeout};

use super::connection::{Counts, Database, DbConnection};
use super::{Outcome, Task};

/// Longest a readiness check waits for its probe: a `/readyz` answer leaves well within 2 s.
pub const READY_WAIT: Duration = Duration::from_millis(1500);

/// How often a probe that is late is logged.
const LATE_LOG_EVERY: Duration = Duration::from_secs(60);

/// See the module docs.
#[derive(Debug)]
pub struct Readiness {
    db: Arc<Database>,
    /// The id its connection carries in log lines.
    id: usize,
    state: Arc<Mutex<State>>,
    /// Signalled when a probe finished.
    finished: Arc<Condvar>,
}

#[derive(Debug)]
struct State {
    /// The probe's connection while no probe runs (`None` before the first, and while one runs).
    connection: Option<DbConnection>,
    running: bool,
    /// Probes finished so far; a check waits for the count to pass what it was at its start.
    done: u64,
    last: Outcome,
    /// What the probes' connection did, for `/metrics`, since it was last taken.
    counts: Counts,
    /// Shut down: no new probe, and a probe that ends closes its session.
    closed: bool,
    late: RateLimited,
}

impl Readiness {
    pub fn new(db: Arc<Database>, id: usize) -> Readiness {
        Readiness {
            db,
            id,
            state: Arc::new(Mutex::new(State {
                connection: None,
                running: false,
                done: 0,
                last: Outcome::Unavailable,
                counts: Counts::default(),
                closed: false,
                late: RateLimited::new(log::Level::Warn, LATE_LOG_EVERY, "warnings"),
            })),
            finished: Arc::new(Condvar::new()),
        }
    }

    /// Probes the database, or joins the probe already running, and waits at most `wait` for
    /// its result: [`Outcome::Ready`], or [`Outcome::Unavailable`] (also when it is late).
    pub fn check(&self, wait: Duration) -> Outcome {
        let deadline = Instant::now() + wait;
        let mut state = lock(&self.state);
        if state.closed {
            return Outcome::Unavailable;
        }
        let target = state.done + 1;
        if !state.running {
            state.running = true;
            if let Err(e) = self.spawn(state.connection.take()) {
                state.running = false;
                log::error!("cannot start a thread for the readiness probe: {e}");
                return Outcome::Unavailable;
            }
        }
        while state.done < target {
            let now = Instant::now();
            if now >= deadline {
                let target = self.db.health.target();
                state.late.log(
                    now,
                    format_args!(
                        "readiness probe: no answer from database {target} within {:.1} s; \
                         /readyz answers 503 until one comes",
                        wait.as_secs_f64()
                    ),
                );
                return Outcome::Unavailable;
            }
            state = wait_timeout(&self.finished, state, deadline - now);
        }
        state.last.clone()
    }

    /// Runs one probe on a thread of its own with `connection` (a new one when `None`).
    fn spawn(&self, connection: Option<DbConnection>) -> std::io::Result<()> {
        let mut connection =
            connection.unwrap_or_else(|| DbConnection::new(self.id, Arc::clone(&self.db)));
        let state = Arc::clone(&self.state);
        let finished = Arc::clone(&self.finished);
        std::thread::Builder::new()
            .name("db-readiness".into())
            .spawn(move || {
                let mut outcomes = Vec::with_capacity(1);
                let probed = catch_unwind(AssertUnwindSafe(|| {
                    connection.process(&[Task::Ping], &mut outcomes)
                }));
                let outcome = match probed {
                    Ok(()) => outcomes.pop().unwrap_or(Outcome::Internal),
                    Err(_) => {
                        log::error!("panic in the readiness probe; answered 503");
                        connection.discard();
                        Outcome::Unavailable
                    }
                };
                let counts = connection.take_counts();
                let mut state = lock(&state);
                state.counts.connects += counts.connects;
                state.counts.errors += counts.errors;
                state.last = outcome;
                state.done += 1;
                state.running = false;
                if !state.closed {
                    state.connection = Some(connection);
                }
                drop(state);
                finished.notify_all();
            })
            .map(drop)
    }

    /// The connects and errors of the probes' connection since the last call.
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut lock(&self.state).counts)
    }

    /// Closes the probes' session; a probe still running closes it when it ends.
    pub fn close(&self) {
        let connection = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.connection.take()
        };
        drop(connection);
    }
}
