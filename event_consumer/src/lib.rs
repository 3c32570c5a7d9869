//! The event consumer: `POST /event` over a small blocking HTTP/1.1 server, stored in
//! PostgreSQL with group commit.
//!
//! [`start`] binds, spawns the database workers and the acceptor, and returns a [`Running`]
//! handle that knows its address; [`Running::shutdown`] stops it gracefully. `main.rs` only
//! parses the command line, loads the configuration and waits for a signal.
#![forbid(unsafe_code)]

pub mod answer;
pub mod content_coding;
pub mod db;
pub mod deadlines;
pub mod descriptors;
pub mod http;
pub mod https;
pub mod metrics;
pub mod notify;
pub mod open_writers;
pub mod pipeline;
pub mod retention;
pub mod routes;
pub mod server;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Config;

use crate::db::{Database, Readiness};
use crate::descriptors::TooFewDescriptors;
use crate::https::{Https, HttpsError};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::Pipeline;
use crate::retention::Retention;
use crate::server::Server;

/// Why the consumer could not start.
#[derive(Debug)]
pub enum StartError {
    Bind {
        addr: String,
        error: std::io::Error,
    },
    Thread(std::io::Error),
    /// The HTTPS files could not be used (a configuration error: exit 2).
    Tls(HttpsError),
    /// `ulimit -n` leaves no descriptor for a client connection.
    Descriptors(TooFewDescriptors),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Thread(error) => write!(f, "cannot start a thread: {error}"),
            StartError::Tls(error) => write!(f, "{error}"),
            StartError::Descriptors(error) => write!(f, "cannot start: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running consumer.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    server: Arc<Server>,
    notifier: Arc<Notifier>,
    shutdown_timeout: Duration,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    retention: Retention,
}

/// Starts the consumer without systemd notifications (tests, embedding).
pub fn start(config: &Config) -> Result<Running, StartError> {
    start_with_notifier(config, Notifier::disabled())
}

/// Binds `consumer.host:consumer.port` (port 0 picks a free one), spawns the database workers
/// and the acceptor, then tells systemd it is ready. The database may be down: the workers
/// keep reconnecting and `/readyz` says so.
pub fn start_with_notifier(config: &Config, notifier: Notifier) -> Result<Running, StartError> {
    let c = &config.consumer;
    // The workers', the readiness probe's and retention's sessions, and per host one attempt
    // given up at its deadline that may still hold its descriptors.
    let hosts = config.database.endpoints().map_or(1, |e| e.len());
    let sessions = c.workers + 2 + hosts;
    let bound =
        descriptors::connection_bound(c.max_connections, descriptors::open_files_limit(), sessions)
            .map_err(StartError::Descriptors)?;
    if let Some(lowered) = bound.lowered_by {
        log::warn!("{lowered}");
    }
    let addr = format!("{}:{}", c.host, c.port);
    let listener = TcpListener::bind(&addr).map_err(|error| StartError::Bind {
        addr: addr.clone(),
        error,
    })?;
    let local = listener
        .local_addr()
        .map_err(|error| StartError::Bind { addr, error })?;
    let https = match c.tls_files() {
        Some(files) => Some(Https::load(files).map_err(StartError::Tls)?),
        None => None,
    };
    let notifier = Arc::new(notifier);
    let metrics = Arc::new(Metrics::default());
    let db = Arc::new(Database::new(config.database.clone()));
    // The readiness probe's connection is numbered after the workers' in log lines.
    let readiness = Readiness::new(Arc::clone(&db), c.workers);
    let pipeline = Arc::new(Pipeline::new(
        Arc::clone(&db),
        readiness,
        pipeline::QUEUE_CAPACITY,
        pipeline::MAX_BATCH,
        Arc::clone(&metrics),
        Arc::clone(&notifier),
    ));
    let retention =
        Retention::start(c.retention(), db, Arc::clone(&metrics)).map_err(StartError::Thread)?;
    let server = Arc::new(Server::new(
        c,
        bound.connections,
        metrics,
        Arc::clone(&pipeline),
        https,
    ));
    let mut workers = Vec::with_capacity(c.workers);
    for id in 0..c.workers {
        let pipeline = Arc::clone(&pipeline);
        let handle = std::thread::Builder::new()
            .name(format!("db-worker-{id}"))
            .spawn(move || pipeline.run_worker(id))
            .map_err(StartError::Thread)?;
        workers.push(handle);
    }
    {
        // Answers 503 to requests the database keeps past their deadline; ends at close.
        let pipeline = Arc::clone(&pipeline);
        let handle = std::thread::Builder::new()
            .name("db-deadlines".into())
            .spawn(move || pipeline.run_deadlines())
            .map_err(StartError::Thread)?;
        workers.push(handle);
    }
    let acceptor = {
        let server = Arc::clone(&server);
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || server::accept_loop(listener, server))
            .map_err(StartError::Thread)?
    };
    log::info!(
        "listening on {local} ({} database workers, database {} at {} as {})",
        c.workers,
        config.database.dbname,
        config.database.endpoints_text(),
        config.database.user
    );
    notifier.ready(&format!("listening on {local}"));
    Ok(Running {
        addr: local,
        server,
        notifier,
        shutdown_timeout: Duration::from_secs_f64(c.shutdown_timeout_seconds),
        acceptor: Some(acceptor),
        workers,
        retention,
    })
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.server.metrics
    }

    /// On SIGHUP: reads the HTTPS certificate, key and client CA again (new connections use
    /// them; on failure the old ones stay and the log says why). Without HTTPS there is
    /// nothing to reload (logs go to standard error), which one line says.
    pub fn reload(&self) {
        match &self.server.https {
            Some(https) => {
                let _ = https.reload();
            }
            None => log::info!("SIGHUP received: nothing to reload, ignoring it"),
        }
    }

    /// Drains before a stop (`consumer.drain_seconds`): from now on `/readyz` answers 503,
    /// while every other request, keep-alive connections and new connections are served as
    /// before. A load balancer notices only at its next failed health checks that this
    /// consumer is leaving; requests it routes here meanwhile are still stored. Ends after
    /// `length`, or earlier when `interrupted` (called with the time left, which it may block
    /// for) says so: a second stop signal. [`Running::shutdown`] comes next either way.
    pub fn drain(&self, length: Duration, mut interrupted: impl FnMut(Duration) -> bool) {
        self.notifier.stopping();
        self.notifier
            .status(&format!("draining for {}s", length.as_secs_f64()));
        self.server.draining.store(true, Ordering::SeqCst);
        log::info!(
            "draining for {}s before stopping: /readyz answers 503, everything else is served",
            length.as_secs_f64()
        );
        let start = Instant::now();
        let end = start + length;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::info!("drain over after {:.1}s", start.elapsed().as_secs_f64());
                return;
            }
            if interrupted(left) {
                log::info!(
                    "drain cut short after {:.1}s by a second stop signal",
                    start.elapsed().as_secs_f64()
                );
                return;
            }
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to `shutdown_timeout_seconds`),
    /// lets the workers store what is queued, then closes the database connections.
    ///
    /// Bounded whatever the database does: `statement_timeout` is enforced by the server, so
    /// a frozen server (SIGSTOPped, hung storage, a paused VM) never ends a statement and a
    /// thread waiting on it waits on a socket without a deadline. After the timeout, the
    /// requests still waiting are answered 503 (queued ones were not stored; those in a batch
    /// the database has not answered may or may not be: a retry with the same Idempotency-Key
    /// is safe either way), and worker threads still blocked after [`WORKER_GRACE`] are left
    /// behind: the process exit closes their sockets.
    pub fn shutdown(mut self) {
        self.notifier.stopping();
        log::info!("shutting down: no new connections, finishing requests in flight");
        self.server.stopping.store(true, Ordering::SeqCst);
        server::wake_acceptor(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Retention is no request's business: it stops first (a chunk under way finishes).
        self.retention.stop(WORKER_GRACE);
        let deadline = Instant::now() + self.shutdown_timeout;
        while self.server.metrics.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.server.pipeline.close();
        let left = self.server.metrics.in_flight.load(Ordering::SeqCst);
        if left > 0 {
            let waiting = self.server.pipeline.refuse_waiting();
            let unanswered = self
                .server
                .open_writers
                .abandon_awaited(&routes::shutting_down());
            log::warn!(
                "{left} requests still in flight after the shutdown timeout: answered 503 to \
                 {waiting} waiting for the database (not stored) and to {unanswered} whose \
                 batch the database has not answered (stored or not; a retry with the same \
                 Idempotency-Key is safe)"
            );
        }
        // Workers end once the queue is drained; one blocked in the database is left behind.
        let grace_end = Instant::now() + WORKER_GRACE;
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < grace_end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (finished, blocked): (Vec<_>, Vec<_>) =
            self.workers.drain(..).partition(|w| w.is_finished());
        for worker in finished {
            let _ = worker.join();
        }
        if blocked.is_empty() {
            self.server.pipeline.disconnect();
        } else {
            // Closing a PostgreSQL connection waits for the server: not with a frozen one.
            log::warn!(
                "{} database workers still wait for the database; exiting without them",
                blocked.len()
            );
        }
        self.server.pipeline.health().flush();
        log::info!(
            "stopped; {} events stored since start",
            self.server.metrics.events_stored()
        );
    }
}

/// How long a stop waits for the worker threads once the queue is closed (a worker may be
/// storing a batch, or probing an unavailable database).
pub const WORKER_GRACE: Duration = Duration::from_secs(2);
