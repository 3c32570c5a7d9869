//! The listener and the connections: one acceptor thread, one thread per open connection
//! (bounded by `max_connections`), and the hand-off of validated events to the pipeline.
//!
//! A connection thread reads a request, routes it, and either answers it at once or hands it
//! to the pipeline as a [`Job`] that carries its [`Answer`]; it does not wait for the outcome
//! but goes straight back to reading (the thread that stores the event answers it). Before it
//! handles the next request it waits until the previous answer has left
//! ([`Connection::settle`]), so answers stay in order and at most one request per connection
//! is with the pipeline. It uses a database connection only when the pipeline lets it store
//! its own event (nothing else waiting), and gives it back before it answers: slow or idle
//! clients therefore hold only their own small thread, never a database connection, and the
//! read/idle deadlines of the HTTP layer end them.
//!
//! Past `max_connections` the acceptor itself answers 503 and closes (`refuse_busy`): the
//! connection gets no thread, so connections over the limit cost no memory, and the client
//! learns at once to retry rather than waiting in the listen backlog. The limit is what bounds
//! memory: a connection thread is charged 40 to 100 KiB by a memory cgroup (docs/capacity.md).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::config::{ConsumerConfig, Secret};
use common::logging::RateLimited;
use common::sync::lock;

use crate::answer::Answer;
use crate::db::Task;
use crate::http::{
    encode_response, BodyBudget, Connection, Limits, Method, ReadError, Rejection, Request,
    RequestHead, ResponseFraming, Route, TlsRefusal, MAX_BUFFERED_BODY_BYTES,
};
use crate::https::Https;
use crate::metrics::Metrics;
use crate::open_writers::OpenWriters;
use crate::pipeline::{Job, Pipeline, QueueError, Refused};
use crate::routes::{self, route, Action, BodyRules};

/// Stack reserved per connection thread. Only the pages a thread touches are resident and
/// charged to a memory cgroup (12 KiB after a small request, 20 KiB after a gzip batch, 24 KiB
/// after a TLS handshake); the reservation costs address space only, so it stays generous.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// What the acceptor and the connection threads share.
#[derive(Debug)]
pub struct Server {
    pub limits: Limits,
    /// `max_connections`, or less when the open-file limit leaves less (`descriptors.rs`).
    pub max_connections: usize,
    pub auth_token: Option<Secret>,
    /// The request bodies all connections may hold at once ([`MAX_BUFFERED_BODY_BYTES`]).
    pub body_budget: Arc<BodyBudget>,
    pub metrics: Arc<Metrics>,
    pub pipeline: Arc<Pipeline>,
    pub stopping: AtomicBool,
    /// Set at a stop with `drain_seconds`: `/readyz` answers 503 so load balancers send new
    /// work elsewhere, while every other request is still served.
    pub draining: AtomicBool,
    /// The answer past `max_connections`, encoded once at start (without a `Date`, which a 5xx
    /// may omit) so the acceptor writes it without building anything.
    pub busy_answer: Vec<u8>,
    /// The writers of open connections, for a stop that cannot wait any longer.
    pub open_writers: OpenWriters,
    /// Limits on decoded bodies and batches, for the router.
    pub body_rules: BodyRules,
    /// Set: the port serves HTTPS only.
    pub https: Option<Https>,
    /// Plain HTTP on the TLS port is logged at most once per 5 s (with a count).
    plain_http_log: Mutex<RateLimited>,
}

impl Server {
    /// The server of `config`'s limits, token and body budget, over `pipeline`, holding at
    /// most `max_connections` client connections.
    pub fn new(
        config: &ConsumerConfig,
        max_connections: usize,
        metrics: Arc<Metrics>,
        pipeline: Arc<Pipeline>,
        https: Option<Https>,
    ) -> Server {
        let mut busy_answer = Vec::new();
        encode_response(
            &mut busy_answer,
            &routes::too_many_connections(),
            ResponseFraming::CLOSING,
            None,
        );
        Server {
            limits: Limits::from_config(config),
            max_connections,
            auth_token: config.auth_token().cloned(),
            // Never below the largest body a request may have, or that body could never be read.
            body_budget: Arc::new(BodyBudget::new(
                MAX_BUFFERED_BODY_BYTES
                    .max(config.max_body_bytes)
                    .max(config.max_batch_bytes),
            )),
            metrics,
            pipeline,
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            busy_answer,
            open_writers: OpenWriters::default(),
            https,
            body_rules: BodyRules::from_config(config),
            plain_http_log: Mutex::new(error_log()),
        }
    }
}

/// Accepts until `stopping` is set. Errors such as EMFILE (out of file descriptors) are logged
/// and retried after a short pause: the listener never ends because of them.
pub fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    let mut errors = error_log();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if server.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let open = server
                    .metrics
                    .open_connections
                    .fetch_add(1, Ordering::SeqCst)
                    + 1;
                if open > server.max_connections {
                    server
                        .metrics
                        .open_connections
                        .fetch_sub(1, Ordering::SeqCst);
                    server.metrics.record_connection_rejected();
                    refuse_busy(stream, &server.busy_answer);
                    continue;
                }
                let for_thread = Arc::clone(&server);
                let spawned = std::thread::Builder::new()
                    .name("connection".into())
                    .stack_size(CONNECTION_STACK_BYTES)
                    .spawn(move || {
                        let _open = OpenConnection(&for_thread.metrics);
                        serve_connection(stream, &for_thread);
                    });
                if let Err(e) = spawned {
                    // The closure (and its stream) was dropped; the guard never ran.
                    server
                        .metrics
                        .open_connections
                        .fetch_sub(1, Ordering::SeqCst);
                    errors.log(
                        Instant::now(),
                        format_args!("cannot start a connection thread: {e}"),
                    );
                }
            }
            Err(e) => {
                if server.stopping.load(Ordering::SeqCst) {
                    break;
                }
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                ) {
                    continue;
                }
                errors.log(
                    Instant::now(),
                    format_args!("accept failed (retrying): {e}"),
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    log::debug!("listener closed");
}

/// Error storms (EMFILE under load, a scanner speaking plain HTTP to the TLS port) are logged
/// at once and then at most one line per 5 s with a count, so they cannot flood the journal.
fn error_log() -> RateLimited {
    RateLimited::new(log::Level::Warn, Duration::from_secs(5), "errors")
}

/// Keeps `open_connections` right however the connection thread ends.
struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers 503 on the acceptor thread without blocking it: whatever the client already sent is
/// discarded (so closing does not reset the connection), the fixed answer written, then closed.
fn refuse_busy(mut stream: TcpStream, answer: &[u8]) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    let _ = stream.read(&mut scratch);
    let _ = stream.write_all(answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn serve_connection(stream: TcpStream, server: &Server) {
    let limits = server.limits.clone();
    let budget = Arc::clone(&server.body_budget);
    let mut conn = match &server.https {
        Some(https) => Connection::with_tls(stream, limits, budget, https.current()),
        None => Connection::new(stream, limits, budget),
    };
    let _registered = server.open_writers.register(conn.writer());
    // Checked when the head is complete, before any of the body is read or buffered.
    let admit = |head: RequestHead<'_>| routes::refuse_head(head, server.auth_token.as_ref());
    loop {
        let read = conn.read_request(&admit);
        // The answer to the previous request may still be on its way from the thread that
        // stored its event: it leaves first, before this thread answers anything or closes.
        if conn.settle().is_err() {
            return;
        }
        let mut request = match read {
            Ok(request) => request,
            Err(ReadError::Closed) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Reject(rejection)) => return refuse(conn, rejection, server),
            Err(ReadError::Tls(refusal)) => return refuse_tls(conn, refusal, server),
        };
        let Ok(stopping) = answer_request(&mut request, &conn, server) else {
            return;
        };
        if !request.keep_alive || stopping {
            // Shut our side (after the answer has left), then drain briefly, so the client
            // reads the answer rather than a reset caused by requests it pipelined after it.
            conn.linger_close();
            return;
        }
    }
}

// The connection thread's own frame stays small, and these are not inlined into it: a
// thread waiting on a slow or idle client keeps every stack page it ever touched resident, so
// the deepest path it took is what it costs (with 2,000 connections, 4 KiB per thread is 8 MB).

/// Answers a request the framer refused, then closes.
#[inline(never)]
fn refuse(conn: Connection, rejection: Rejection, server: &Server) {
    let route = rejection.path.as_deref().map_or(Route::Other, Route::of);
    let answer = Answer::new(
        conn.writer(),
        ResponseFraming::CLOSING,
        route,
        &server.metrics,
    );
    let _ = answer.send(&rejection.response);
    conn.linger_close();
}

/// Ends a connection that is not a TLS session we serve; counted, and logged without flooding:
/// a failed handshake (a scanner, a device without its certificate) at debug level, a refused
/// client certificate also at warn level, rate-limited per kind (`https::refusal`).
#[inline(never)]
fn refuse_tls(conn: Connection, refusal: TlsRefusal, server: &Server) {
    let peer = conn
        .peer_addr()
        .map_or_else(|| "a client".to_owned(), |p| p.to_string());
    match refusal {
        TlsRefusal::PlainHttp => {
            server.metrics.record_tls_plain_http();
            lock(&server.plain_http_log).log(
                Instant::now(),
                format_args!("plain HTTP from {peer} on the HTTPS port: answered 400, closed"),
            );
            conn.refuse_plain_http();
        }
        TlsRefusal::Refused(error) => {
            log::debug!("TLS with {peer} failed: {error}");
            if let Some(https) = &server.https {
                https.refusals.record(&peer, &error, Instant::now());
            }
            server.metrics.record_tls_handshake_failure();
        }
        TlsRefusal::Failed(why) => {
            server.metrics.record_tls_handshake_failure();
            log::debug!("TLS with {peer} failed: {why}");
        }
    }
}

/// Routes one request and answers it, or hands it to the pipeline. Returns whether the service
/// is stopping (then the connection closes after this answer).
#[inline(never)]
fn answer_request(
    request: &mut Request,
    conn: &Connection,
    server: &Server,
) -> std::io::Result<bool> {
    // Counted in flight (by `Answer::new`) before `stopping` is read: shutdown either
    // waits for this request or the request sees `stopping` and is refused.
    let framing = ResponseFraming {
        keep_alive: request.keep_alive,
        http10: request.http10,
        head_only: request.method == Method::Head,
    };
    let mut answer = Answer::new(
        conn.writer(),
        framing,
        Route::of(&request.path),
        &server.metrics,
    );
    if server.stopping.load(Ordering::SeqCst) {
        answer.set_closing();
        answer.send(&routes::shutting_down())?;
        return Ok(true);
    }
    match catch_unwind(AssertUnwindSafe(|| {
        route(request, server.auth_token.as_ref(), &server.body_rules)
    })) {
        Ok(action) => act(action, answer, server)?,
        Err(_) => {
            log::error!(
                "panic while handling {:?} {}; answered 500",
                request.method,
                request.path
            );
            answer.send(&routes::internal_error())?
        }
    }
    Ok(false)
}

/// Carries out the router's decision: answers at once, or hands the request to the pipeline.
#[inline(never)]
fn act(action: Action, answer: Answer, server: &Server) -> std::io::Result<()> {
    let task = match action {
        Action::Respond(response) => return answer.send(&response),
        Action::Metrics => {
            let down = server.pipeline.health().is_down();
            let text = server.metrics.render(down).into_bytes();
            return answer.send(&crate::http::Response::metrics_text(text));
        }
        // No probe write: whatever the database says, this consumer is leaving.
        Action::CheckReady if server.draining.load(Ordering::SeqCst) => {
            return answer.send(&routes::draining());
        }
        // Not through the queue: the probe has a deadline and a session of its own.
        Action::CheckReady => {
            return answer.send(&routes::answer_to(&server.pipeline.check_ready()));
        }
        Action::StoreBatch { items } => Task::StoreBatch { items },
        Action::Store {
            event,
            idempotency_key,
        } => Task::Store {
            event,
            idempotency_key,
        },
    };
    let job = Job {
        task,
        answer: answer.hand_over(),
    };
    match server.pipeline.submit(job) {
        Ok(()) => Ok(()),
        Err(Refused { error, answer }) => answer.send(&match error {
            QueueError::Full => routes::queue_full(),
            QueueError::Closed => routes::shutting_down(),
        }),
    }
}

/// Wakes a blocked `accept` so the acceptor sees `stopping`.
pub fn wake_acceptor(addr: SocketAddr) {
    let target = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    };
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}
