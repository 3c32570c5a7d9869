//! One client connection: the socket loop that drives the [`Framer`] with reads against
//! absolute deadlines, and the [`Writer`] every answer leaves through.
//!
//! Deadlines: up to `idle_timeout` for the first byte of a request, then `read_timeout` for the
//! whole head, then `read_timeout` again for the whole body. Each is absolute, so a client
//! trickling one byte at a time cannot stretch it.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::BodyBudget;
use super::encode::ResponseFraming;
use super::framer::{Framer, Phase, Rejection, Step};
use super::limits::Limits;
use super::request::{Request, RequestHead};
use super::response::Response;
use super::status::Status;
use super::tls::{Tls, TlsReadError};
use super::writer::Writer;
use rustls::ServerConfig;

/// Lingering close: after our last answer, input is discarded for at most this long so the
/// client reads the answer instead of a TCP reset (which would discard it unread).
const LINGER_TIME: Duration = Duration::from_secs(2);
/// ... and for at most this many bytes, so a client that never stops sending is cut off.
const LINGER_BYTES: usize = 1024 * 1024;
/// How long a body waits for room in the [`BodyBudget`] before it is refused with 503. Long
/// enough to ride out a burst (a stored body gives its bytes back within milliseconds), short
/// enough that waiting connections do not pile up: a client told to retry comes back later.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);
/// Below this, the deadline counts as passed (and a zero socket timeout would mean "none").
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// A socket timeout already set is kept while it ends within this much of the deadline: it
/// saves a `setsockopt` per read at the cost of overshooting a deadline by at most this much.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// Why [`Connection::read_request`] returned no request.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing to answer: the client closed cleanly between requests, the keep-alive idle
    /// timeout passed before any byte of a new request, or the connection was shut down through
    /// [`Connection::shutdown_handle`] while idle.
    Closed,
    /// Send this answer (a 4xx, or 505) with [`Connection::reject_and_close`]: the request
    /// stream can no longer be framed.
    Reject(Rejection),
    /// Socket error or end of stream in the middle of a request: drop the connection.
    Io(io::Error),
    /// Over HTTPS, the connection is not a TLS session we serve: see [`TlsRefusal`].
    Tls(TlsRefusal),
}

/// Why an HTTPS connection was given up before a request.
#[derive(Debug)]
pub enum TlsRefusal {
    /// Plain HTTP sent to the TLS port: answer with [`Connection::refuse_plain_http`].
    PlainHttp,
    /// The TLS library refused the handshake (no client certificate, an unknown CA, an expired
    /// or X.509 v1 certificate) or a record; the alert was sent.
    Refused(rustls::Error),
    /// The client sent no handshake in time, or the socket failed during it.
    Failed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => write!(f, "connection closed between requests"),
            ReadError::Reject(rejection) => {
                write!(
                    f,
                    "request refused with {}",
                    rejection.response.status.code()
                )
            }
            ReadError::Io(_) => write!(f, "connection failed mid-request"),
            ReadError::Tls(TlsRefusal::PlainHttp) => write!(f, "plain HTTP on the TLS port"),
            ReadError::Tls(TlsRefusal::Refused(e)) => write!(f, "TLS refused: {e}"),
            ReadError::Tls(TlsRefusal::Failed(why)) => write!(f, "TLS failed: {why}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(error) => Some(error),
            ReadError::Closed | ReadError::Reject(_) | ReadError::Tls(_) => None,
        }
    }
}

/// What stopped a read.
enum ReadStop {
    /// The deadline passed before any byte arrived.
    Deadline,
    Io(io::Error),
}

/// One client connection: the reading half (socket, framer, deadlines) and its [`Writer`].
pub struct Connection {
    /// Read from here only; writes go through `writer`.
    stream: Arc<TcpStream>,
    writer: Arc<Writer>,
    framer: Framer,
    /// Shared by all connections; the framer holds this request's share of it.
    budget: Arc<BodyBudget>,
    /// The read timeout currently set on the socket, to skip needless `setsockopt` calls.
    read_timeout_set: Option<Duration>,
    peer: Option<SocketAddr>,
    /// Over HTTPS: the session, shared with the writer.
    tls: Option<Arc<Tls>>,
    /// The handshake must be done by then (`read_timeout` after the accept), like a head.
    handshake_deadline: Instant,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("buffered", &self.framer.buffered())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Takes over an accepted socket: blocking mode, `TCP_NODELAY`.
    pub fn new(stream: TcpStream, limits: Limits, budget: Arc<BodyBudget>) -> Connection {
        Connection::build(stream, limits, budget, None)
    }

    /// The same over TLS: the handshake happens in the first [`Connection::read_request`],
    /// within `read_timeout`.
    pub fn with_tls(
        stream: TcpStream,
        limits: Limits,
        budget: Arc<BodyBudget>,
        config: Arc<ServerConfig>,
    ) -> Connection {
        Connection::build(stream, limits, budget, Some(config))
    }

    fn build(
        stream: TcpStream,
        limits: Limits,
        budget: Arc<BodyBudget>,
        tls_config: Option<Arc<ServerConfig>>,
    ) -> Connection {
        // Failing socket options leave a working (if slower or less guarded) socket; the next
        // read or write reports a dead one.
        // A non-blocking listener passes O_NONBLOCK to accepted sockets on some systems.
        let _ = stream.set_nonblocking(false);
        // Small responses must leave at once, not wait for Nagle to coalesce them.
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let stream = Arc::new(stream);
        // A session cannot fail to start with a config rustls built; if it did, the
        // connection would be plain, so it fails at the first TLS byte instead.
        let tls = tls_config
            .and_then(|config| Tls::new(Arc::clone(&stream), config).ok())
            .map(Arc::new);
        let writer = Arc::new(Writer::with_tls(
            Arc::clone(&stream),
            limits.write_timeout.max(MIN_TIMEOUT),
            tls.clone(),
        ));
        let handshake_deadline = deadline_after(limits.read_timeout);
        Connection {
            stream,
            writer,
            framer: Framer::new(limits),
            budget,
            read_timeout_set: None,
            peer,
            tls,
            handshake_deadline,
        }
    }

    /// The writing half, for a thread that answers a request of this connection.
    pub fn writer(&self) -> &Arc<Writer> {
        &self.writer
    }

    /// Reads the next request. Bytes past it stay buffered for the next call.
    ///
    /// Once the head is complete, `admit` may refuse it with an answer, before any of its body
    /// is read (the connection is then closed). A body larger than the uncharged size waits up
    /// to `BUDGET_WAIT` (1 s) for its share of the [`BodyBudget`], or is refused with 503. Only
    /// then is `100 Continue` sent, when the client asked for it and has not started the body.
    #[inline(never)]
    pub fn read_request(
        &mut self,
        admit: &dyn Fn(RequestHead<'_>) -> Option<Response>,
    ) -> Result<Request, ReadError> {
        let mut phase = self.framer.phase();
        let mut deadline = self.deadline_for(phase);
        loop {
            match self.framer.step().map_err(ReadError::Reject)? {
                Step::Request(request) => return Ok(request),
                Step::Head => {
                    if let Some(head) = self.framer.head() {
                        if let Some(response) = admit(head) {
                            return Err(ReadError::Reject(Rejection {
                                response,
                                path: Some(head.path.to_owned()),
                            }));
                        }
                    }
                }
                Step::NeedBudget(bytes) => {
                    let now = self.framer.phase();
                    if now != phase {
                        phase = now;
                        deadline = self.deadline_for(phase);
                    }
                    let wait_until = deadline.min(deadline_after(BUDGET_WAIT));
                    match self.budget.reserve_before(bytes, wait_until) {
                        Some(reservation) => self.framer.grant(reservation),
                        None => {
                            return Err(ReadError::Reject(Rejection::budget_exhausted(
                                self.framer.path(),
                            )))
                        }
                    }
                }
                Step::SendContinue => self
                    .writer
                    .send_interim(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .map_err(ReadError::Io)?,
                Step::NeedMore => {
                    let now = self.framer.phase();
                    if now != phase {
                        phase = now;
                        deadline = self.deadline_for(phase);
                    }
                    let handshaking = self.tls.as_ref().is_some_and(|t| t.is_handshaking());
                    if handshaking {
                        deadline = deadline.min(self.handshake_deadline);
                    }
                    let dst = self.framer.space().map_err(ReadError::Reject)?;
                    let read = match &self.tls {
                        None => {
                            read_before(&self.stream, &mut self.read_timeout_set, dst, deadline)
                        }
                        Some(tls) => {
                            let timeout_set = &mut self.read_timeout_set;
                            let writer = &self.writer;
                            match tls.read(
                                dst,
                                |tcp, raw| read_before(tcp, timeout_set, raw, deadline),
                                || writer.flush_tls(),
                            ) {
                                Ok(n) => Ok(n),
                                Err(TlsReadError::Raw(stop)) if handshaking => {
                                    let why = match stop {
                                        ReadStop::Deadline => {
                                            "no handshake within read_timeout_seconds".to_owned()
                                        }
                                        ReadStop::Io(e) => e.to_string(),
                                    };
                                    return Err(ReadError::Tls(TlsRefusal::Failed(why)));
                                }
                                Err(TlsReadError::Raw(stop)) => Err(stop),
                                Err(TlsReadError::Write(e)) => Err(ReadStop::Io(e)),
                                Err(TlsReadError::PlainHttp) => {
                                    return Err(ReadError::Tls(TlsRefusal::PlainHttp))
                                }
                                Err(TlsReadError::Protocol(e)) => {
                                    return Err(ReadError::Tls(TlsRefusal::Refused(e)))
                                }
                            }
                        }
                    };
                    match read {
                        Ok(0) if phase == Phase::Idle => return Err(ReadError::Closed),
                        Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
                        Ok(n) => self.framer.filled(n),
                        Err(ReadStop::Deadline) if phase == Phase::Idle => {
                            return Err(ReadError::Closed)
                        }
                        Err(ReadStop::Deadline) => {
                            return Err(ReadError::Reject(Rejection {
                                response: Response::error(
                                    Status::RequestTimeout,
                                    "request was not received in time",
                                ),
                                path: self.framer.path().map(str::to_owned),
                            }))
                        }
                        Err(ReadStop::Io(error)) => return Err(ReadError::Io(error)),
                    }
                }
            }
        }
    }

    fn deadline_for(&self, phase: Phase) -> Instant {
        let limits = self.framer.limits();
        deadline_after(match phase {
            Phase::Idle => limits.idle_timeout,
            Phase::Head | Phase::Body => limits.read_timeout,
        })
    }

    /// Waits until the answer handed to another thread has left; see [`Writer::settle`].
    pub fn settle(&self) -> io::Result<()> {
        self.writer.settle()
    }

    /// Writes one answer from this thread, after any awaited one.
    pub fn write_response(&self, response: &Response, framing: ResponseFraming) -> io::Result<()> {
        self.writer.send(response, framing)
    }

    /// Answers a rejected request (with `Connection: close`) and closes with a lingering close.
    pub fn reject_and_close(self, response: &Response) {
        // A client that is gone cannot be answered; closing is all that is left.
        let _ = self.write_response(response, ResponseFraming::CLOSING);
        self.linger_close();
    }

    /// Closes from our side after the last answer: shuts down our write half (the client sees
    /// the end of the stream after our answer), then discards input for at most 2 s and 1 MiB,
    /// so that unread input does not make the kernel send a reset that destroys our answer
    /// before the client has read it.
    ///
    /// A body being read is dropped first and its budget given back: a refused slow uploader
    /// does not keep its share while it lingers. The drain reads into the framer's small read
    /// buffer, not into a stack array, so thousands of lingering threads touch no more stack.
    pub fn linger_close(mut self) {
        let scratch = self.framer.discard();
        if self.writer.close().is_err() {
            return;
        }
        let deadline = deadline_after(LINGER_TIME);
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match read_before(&self.stream, &mut self.read_timeout_set, scratch, deadline) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }

    /// Answers plain HTTP sent to the TLS port in plain text (through the writer, past the
    /// session), as nginx does, and closes: the client learns what is wrong instead of seeing a
    /// reset.
    pub fn refuse_plain_http(mut self) {
        let response = Response::error(Status::BadRequest, "this port speaks HTTPS: use https://");
        if self.writer.send_plain_text(&response).is_err() {
            return;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        // Drain briefly so the client reads the answer rather than a reset.
        let deadline = deadline_after(Duration::from_millis(500));
        let scratch = self.framer.discard();
        while let Ok(n) = read_before(&self.stream, &mut self.read_timeout_set, scratch, deadline) {
            if n == 0 {
                break;
            }
        }
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// A second handle on the socket. `shutdown(Shutdown::Both)` on it wakes a blocked
    /// [`Connection::read_request`]: while idle it returns [`ReadError::Closed`], mid-request
    /// [`ReadError::Io`]. Do not make it non-blocking: the flag is shared with this connection.
    pub fn shutdown_handle(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// One `read` into `dst` (which must not be empty) that gives up at `deadline`.
///
/// Linux reports an expired socket timeout as `WouldBlock`, other systems as `TimedOut`; both
/// mean "look at the deadline again". The socket timeout is set to the time left, so a client
/// trickling bytes cannot stretch the deadline.
fn read_before(
    mut stream: &TcpStream,
    timeout_set: &mut Option<Duration>,
    dst: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadStop> {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining < MIN_TIMEOUT {
            return Err(ReadStop::Deadline);
        }
        let close_enough = timeout_set.is_some_and(|set| {
            set <= remaining + TIMEOUT_SLACK && remaining <= set + TIMEOUT_SLACK
        });
        if !close_enough {
            stream
                .set_read_timeout(Some(remaining))
                .map_err(ReadStop::Io)?;
            *timeout_set = Some(remaining);
        }
        match stream.read(dst) {
            Ok(n) => return Ok(n),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(ReadStop::Io(error)),
        }
    }
}

#[cfg(test)]
mod tests;
