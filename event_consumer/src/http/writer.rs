//! The writing half of a connection. Every byte the consumer sends on a connection goes
//! through its [`Writer`]: answers, `100 Continue`, the TLS session's handshake messages and
//! alerts, and the plain-text refusal of plain HTTP on the TLS port. It is owned by the
//! connection's thread, which writes every answer itself, so it needs no lock: it blocks up to
//! the write timeout (the socket's send timeout, set once) and an error means the connection
//! is broken. The encoding buffer is kept between answers; over HTTPS the writer owns the
//! connection's TLS session too, which the reading half borrows to decrypt.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::encode::{encode_response, DateCache, ResponseFraming};
use super::response::Response;
use super::tls::Tls;

/// The writing half of one connection; see the module docs.
#[derive(Debug)]
pub struct Writer {
    /// Shared with the reading half, which only reads from it.
    stream: Arc<TcpStream>,
    /// Encoded answers; cleared (not freed) once written. Allocated at the first answer: an
    /// idle connection holds no answer buffer.
    out: Vec<u8>,
    /// A write failed: the connection is broken.
    failed: Option<io::ErrorKind>,
    date: DateCache,
    /// Over HTTPS: answers are encrypted into the session before they are written.
    tls: Option<Tls>,
}

impl Writer {
    /// A writer that sends through a TLS session (over HTTPS) or in plain text (`None`).
    pub fn new(stream: Arc<TcpStream>, write_timeout: Duration, tls: Option<Tls>) -> Writer {
        // Failing leaves a socket without a send timeout; the next write reports a dead one.
        let _ = stream.set_write_timeout(Some(write_timeout));
        Writer {
            stream,
            out: Vec::new(),
            failed: None,
            date: DateCache::default(),
            tls,
        }
    }

    /// Writes one answer.
    pub fn send(&mut self, response: &Response, framing: ResponseFraming) -> io::Result<()> {
        encode_response(&mut self.out, response, framing, Some(self.date.now()));
        self.flush()
    }

    /// Writes bytes that are not an answer (`100 Continue`).
    pub fn send_interim(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        self.flush()
    }

    /// Answers plain HTTP sent to the TLS port in plain text, past the TLS session (the client
    /// speaks none), as nginx does.
    pub fn send_plain_text(&mut self, response: &Response) -> io::Result<()> {
        let tls = self.tls.take();
        let sent = self.send(response, ResponseFraming::CLOSING);
        self.tls = tls;
        sent
    }

    /// The TLS session, for the reading half.
    pub fn tls(&mut self) -> Option<&mut Tls> {
        self.tls.as_mut()
    }

    /// Ends our sending side after the last answer, with TLS's `close_notify` first over
    /// HTTPS.
    pub fn close(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        if let Some(tls) = &mut self.tls {
            tls.close_notify();
            tls.write_pending()?;
        }
        self.stream.shutdown(Shutdown::Write)
    }

    /// Ends the connection at once, both ways (a stop that cannot wait any longer, after its
    /// last answer).
    pub fn abort(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.failed = Some(io::ErrorKind::BrokenPipe);
    }

    /// Writes everything encoded, waiting up to the write timeout per write.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            self.out.clear();
            return Err(kind.into());
        }
        let result = match &mut self.tls {
            Some(tls) => tls.encrypt(&self.out).and_then(|()| tls.write_pending()),
            None => (&*self.stream).write_all(&self.out),
        };
        self.out.clear();
        if let Err(error) = &result {
            self.failed = Some(error.kind());
        }
        result
    }
}
