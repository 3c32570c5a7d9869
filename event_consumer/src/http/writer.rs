//! The writing half of a connection. Every byte the consumer sends on a connection goes
//! through its [`Writer`], whichever thread sends it: the connection's own thread, or the
//! thread that stored the request's event and answers it right after the commit (so the
//! client does not wait for the connection's thread to be woken). One lock around the writing
//! state keeps each answer whole and the answers in the order of their requests; the reading
//! half never writes. Over HTTPS the writer encrypts each answer into the connection's session
//! ([`Tls`], its own lock, taken inside the writer's: see `tls.rs` for the lock order) and
//! writes the ciphertext; handshake messages and alerts leave through here too.
//!
//! An answer is "awaited" from the moment the connection hands its request over to another
//! thread ([`Writer::await_answer`]) until that thread has written it
//! ([`Writer::send_awaited`]). The connection's own writes wait for the awaited answer first
//! ([`Writer::settle`]), and the connection hands over at most one request at a time, so
//! answers leave in order. Whoever hands a request over passes an [`OnAnswer`] with it, called
//! once with the status that actually left: the awaited answer's, or the one
//! [`Writer::abandon`] wrote in its place (so `/metrics` counts what the client got).
//!
//! The other thread must not be held up by a client that does not read: it writes with a
//! send timeout of [`BORROWED_SEND_TIMEOUT`] and leaves what the socket did not take for the
//! connection's thread, which writes it (blocking, up to the write timeout) before anything
//! else. The send timeout (`SO_SNDTIMEO`) affects writes only, and every write holds the lock,
//! so changing it never disturbs the reading half; the blocking mode of the socket is never
//! changed. Only a client that pipelines far ahead without reading can leave such a rest
//! behind; it gets it once it sends its next request or the connection closes.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

use common::sync::{lock, wait};
use std::time::Duration;

use super::encode::{encode_response, DateCache, ResponseFraming};
use super::response::Response;
use super::status::Status;
use super::tls::Tls;

/// How long a thread other than the connection's may wait for the socket to take an answer.
/// The kernel rounds it up to its clock tick; an answer of a few hundred bytes to a client
/// that reads never waits at all.
pub const BORROWED_SEND_TIMEOUT: Duration = Duration::from_millis(1);

/// Called once, under the writer's lock and before the bytes leave, with the status of what was
/// written for an awaited answer: the answer itself, or the one an abandon wrote in its place.
pub struct OnAnswer(Box<dyn FnOnce(Status) + Send>);

impl OnAnswer {
    pub fn new(call: impl FnOnce(Status) + Send + 'static) -> OnAnswer {
        OnAnswer(Box::new(call))
    }
}

impl std::fmt::Debug for OnAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnAnswer")
    }
}

/// The writing half of one connection; see the module docs.
#[derive(Debug)]
pub struct Writer {
    state: Mutex<WriteState>,
    /// Signalled when an awaited answer has been written (or could not be).
    answered: Condvar,
}

#[derive(Debug)]
struct WriteState {
    /// Shared with the reading half, which only reads from it.
    stream: Arc<TcpStream>,
    write_timeout: Duration,
    /// The send timeout set on the socket, so it is changed only when the writer changes.
    send_timeout: Option<Duration>,
    /// An answer was handed to another thread and is not written yet: what to call when it is
    /// (or when an abandon writes another in its place).
    awaited: Option<OnAnswer>,
    /// The connection's thread waits for the awaited answer. Tracked so that the answering
    /// thread wakes it only when it waits: a condvar notify is a futex call even without
    /// waiters, once per request otherwise.
    settling: bool,
    /// Encoded bytes the socket has not taken yet; `out[sent..]` is what is left.
    out: Vec<u8>,
    sent: usize,
    /// A write failed: the connection is broken.
    failed: Option<io::ErrorKind>,
    date: DateCache,
    /// Over HTTPS: answers are encrypted into the session, and what the socket did not take
    /// waits there (instead of in `out`).
    tls: Option<Arc<Tls>>,
}

impl Writer {
    pub fn new(stream: Arc<TcpStream>, write_timeout: Duration) -> Writer {
        Writer::with_tls(stream, write_timeout, None)
    }

    /// A writer that sends through a TLS session (over HTTPS) or in plain text (`None`).
    pub fn with_tls(
        stream: Arc<TcpStream>,
        write_timeout: Duration,
        tls: Option<Arc<Tls>>,
    ) -> Writer {
        Writer {
            state: Mutex::new(WriteState {
                stream,
                write_timeout,
                send_timeout: None,
                awaited: None,
                settling: false,
                // Allocated at the first answer: an idle connection holds no answer buffer.
                out: Vec::new(),
                sent: 0,
                failed: None,
                date: DateCache::default(),
                tls,
            }),
            answered: Condvar::new(),
        }
    }

    /// Waits for an awaited answer, then writes what is left of it; an error means the
    /// connection is broken. Every write of the connection's own thread does this first.
    pub fn settle(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        while state.awaited.is_some() {
            state.settling = true;
            state = wait(&self.answered, state);
        }
        state.settling = false;
        state.flush_blocking()
    }

    /// Writes an answer from the connection's own thread (after [`Writer::settle`]).
    pub fn send(&self, response: &Response, framing: ResponseFraming) -> io::Result<()> {
        self.settle()?;
        let mut state = lock(&self.state);
        state.encode(response, framing);
        state.flush_blocking()
    }

    /// Answers plain HTTP sent to the TLS port in plain text, past the TLS session (the client
    /// speaks none), as nginx does; from the connection's own thread.
    pub fn send_plain_text(&self, response: &Response) -> io::Result<()> {
        self.settle()?;
        let mut state = lock(&self.state);
        let tls = state.tls.take();
        state.encode(response, ResponseFraming::CLOSING);
        let sent = state.flush_blocking();
        state.tls = tls;
        sent
    }

    /// Writes bytes that are not an answer (`100 Continue`) from the connection's own thread.
    pub fn send_interim(&self, bytes: &[u8]) -> io::Result<()> {
        self.settle()?;
        let mut state = lock(&self.state);
        state.out.extend_from_slice(bytes);
        state.flush_blocking()
    }

    /// Announces that another thread will write the answer to the request just read;
    /// `on_answer` is called with the status of what is written for it.
    pub fn await_answer(&self, on_answer: OnAnswer) {
        lock(&self.state).awaited = Some(on_answer);
    }

    /// Writes the awaited answer from another thread without waiting on the client for more
    /// than [`BORROWED_SEND_TIMEOUT`]; the rest, if any, is left to the connection's thread.
    /// Nothing is written when an abandon answered in its place.
    pub fn send_awaited(&self, response: &Response, framing: ResponseFraming) {
        let mut state = lock(&self.state);
        let Some(on_answer) = state.awaited.take() else {
            return;
        };
        (on_answer.0)(response.status);
        state.encode(response, framing);
        state.flush_borrowed();
        let wake = state.settling;
        drop(state);
        if wake {
            self.answered.notify_all();
        }
    }

    /// For a stop that cannot wait: when an answer is awaited, writes `response` in its place
    /// (without waiting on the client for more than [`BORROWED_SEND_TIMEOUT`]), shuts the
    /// connection and fails every later write, so the answer the other thread may still send
    /// goes nowhere. Returns whether an answer was awaited.
    pub fn abandon(&self, response: &Response) -> bool {
        let mut state = lock(&self.state);
        let Some(on_answer) = state.awaited.take() else {
            return false;
        };
        (on_answer.0)(response.status);
        state.encode(response, ResponseFraming::CLOSING);
        state.flush_borrowed();
        let _ = state.stream.shutdown(Shutdown::Both);
        state.failed = Some(io::ErrorKind::BrokenPipe);
        drop(state);
        self.answered.notify_all();
        true
    }

    /// Writes what the TLS session wants to send outside an answer (handshake messages,
    /// alerts), for the reading half; waits up to the write timeout.
    pub fn flush_tls(&self) -> io::Result<()> {
        lock(&self.state).flush_blocking()
    }

    /// Ends our sending side after the last answer (which is written first), with TLS's
    /// `close_notify` first over HTTPS.
    pub fn close(&self) -> io::Result<()> {
        self.settle()?;
        let mut state = lock(&self.state);
        if let Some(tls) = &state.tls {
            tls.close_notify();
            state.flush_blocking()?;
        }
        state.stream.shutdown(Shutdown::Write)
    }
}

impl WriteState {
    fn encode(&mut self, response: &Response, framing: ResponseFraming) {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        encode_response(&mut self.out, response, framing, Some(self.date.now()));
    }

    fn set_send_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if self.send_timeout != Some(timeout) {
            self.stream.set_write_timeout(Some(timeout))?;
            self.send_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Writes everything that is left, waiting up to the write timeout per write.
    fn flush_blocking(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        if self.tls.is_some() {
            return self.flush_tls(self.write_timeout, true);
        }
        if self.sent == self.out.len() {
            return Ok(());
        }
        let timeout = self.write_timeout;
        let result = self
            .set_send_timeout(timeout)
            .and_then(|()| (&*self.stream).write_all(&self.out[self.sent..]));
        match result {
            Ok(()) => {
                self.out.clear();
                self.sent = 0;
                Ok(())
            }
            Err(error) => {
                self.failed = Some(error.kind());
                Err(error)
            }
        }
    }

    /// Encrypts what `out` holds into the session, then writes the session's ciphertext with
    /// `timeout` per write. What the socket does not take in time stays in the session: an
    /// error when `blocking` (as a blocking write that timed out), left for later otherwise.
    fn flush_tls(&mut self, timeout: Duration, blocking: bool) -> io::Result<()> {
        let Some(tls) = self.tls.clone() else {
            return Ok(());
        };
        let result = (|| -> io::Result<()> {
            if self.sent < self.out.len() {
                tls.encrypt(&self.out[self.sent..])?;
                self.out.clear();
                self.sent = 0;
            }
            if !tls.wants_write() {
                return Ok(());
            }
            self.set_send_timeout(timeout)?;
            match tls.write_pending()? {
                true => Ok(()),
                false if blocking => Err(io::ErrorKind::TimedOut.into()),
                false => Ok(()),
            }
        })();
        if let Err(error) = &result {
            self.failed = Some(error.kind());
        }
        result
    }

    /// Writes what the socket takes within the borrowed send timeout.
    fn flush_borrowed(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if self.tls.is_some() {
            let _ = self.flush_tls(BORROWED_SEND_TIMEOUT, false);
            return;
        }
        if let Err(error) = self.set_send_timeout(BORROWED_SEND_TIMEOUT) {
            self.failed = Some(error.kind());
            return;
        }
        while self.sent < self.out.len() {
            match (&*self.stream).write(&self.out[self.sent..]) {
                Ok(0) => {
                    self.failed = Some(io::ErrorKind::WriteZero);
                    return;
                }
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Linux reports an expired send timeout as WouldBlock, others as TimedOut.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return
                }
                Err(e) => {
                    self.failed = Some(e.kind());
                    return;
                }
            }
        }
        self.out.clear();
        self.sent = 0;
    }
}
