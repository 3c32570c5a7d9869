//! The request framer, without I/O: bytes go in, requests come out. The socket loop
//! ([`super::Connection`]) and the fuzz target drive this same code, so what is fuzzed is what
//! serves.
//!
//! Driving it: call [`Framer::step`]; on [`Step::NeedMore`] read into [`Framer::space`] and
//! report the count with [`Framer::filled`]; on [`Step::SendContinue`] send
//! `100 Continue` and step again. Bytes after a request stay buffered for the next one
//! (pipelining). Every limit is checked before memory is spent on it: a declared
//! `Content-Length` over the limit is refused from the head alone, and a chunked body is
//! refused as soon as its decoded size would pass the limit.
//!
//! Between the head and the body the framer stops twice: [`Step::Head`] lets the caller
//! refuse the request from its head alone (a missing token, before any body is read), and
//! [`Step::NeedBudget`] asks for a share of the [`BodyBudget`] before a body buffer larger than
//! [`UNCHARGED_BODY_BYTES`] is allocated.

use std::sync::Arc;

use super::budget::{BodyBudget, Reservation};
use super::chunked::ChunkedDecoder;
use super::head::{parse_head, path_of, BodyFraming, Head, HeadScanner};
use super::limits::Limits;
use super::request::{Request, RequestHead};
use super::response::Response;
use super::status::Status;

/// First size of the read buffer; it grows up to the head limit only when needed, and shrinks
/// back once a request is done and nothing is buffered. A typical head (the propagator's) is
/// about 200 bytes; 1 KiB keeps 2,000 idle connections at about 2 MiB of buffers.
const INITIAL_BUFFER_BYTES: usize = 1024;

/// A body buffer up to this size is not charged to the [`BodyBudget`]: like the read buffer it
/// is bounded per connection (`max_connections` times this, 8 MiB at the defaults), and
/// charging it would let a few large slow uploads make every ordinary event (about 100 bytes)
/// wait. A larger body is charged in full.
pub const UNCHARGED_BODY_BYTES: usize = 4 * 1024;

/// A request that cannot be served: the answer to send before closing (the stream can no
/// longer be framed), and the path of its request line when there was one, so the refusal is
/// counted under its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub response: Response,
    pub path: Option<String>,
}

impl Rejection {
    /// The answer to a body that found no room in the [`BodyBudget`] in time.
    pub fn budget_exhausted(path: Option<&str>) -> Rejection {
        Rejection {
            response: Response::error(
                Status::ServiceUnavailable,
                "server busy: too many request bodies in memory, retry in a moment",
            )
            .with_header("Retry-After", "1"),
            path: path.map(str::to_owned),
        }
    }

    fn new(status: Status, message: &str, path: Option<String>) -> Rejection {
        Rejection {
            response: Response::error(status, message),
            path,
        }
    }
}

/// What the framer needs or has.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A complete request.
    Request(Request),
    /// A head is complete and checked; no byte of its body has been framed. Look at it with
    /// [`Framer::head`]: refuse it (and close), or step on.
    Head,
    /// The body needs this many more bytes of the [`BodyBudget`] before its buffer is
    /// allocated: reserve them and pass the [`Reservation`] to [`Framer::grant`], or refuse the
    /// request (503) and close.
    NeedBudget(usize),
    /// Read more bytes into [`Framer::space`].
    NeedMore,
    /// The client waits for `100 Continue` before it sends the body: send it, then step on.
    SendContinue,
}

/// Where the framer is in the stream, for the socket loop's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests: no byte of the next one yet.
    Idle,
    Head,
    Body,
}

#[derive(Debug)]
enum State {
    Head(HeadScanner),
    /// A checked head, its body not started: waiting to be admitted and for its budget.
    Parsed(Head),
    /// A `Content-Length` body, read straight into its own buffer.
    Sized {
        head: Head,
        body: Vec<u8>,
        filled: usize,
    },
    Chunked {
        head: Head,
        decoder: ChunkedDecoder,
        body: Vec<u8>,
    },
    /// A request was refused: nothing more can be framed.
    Refused,
}

/// Frames the requests of one connection.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    /// Read buffer; the unconsumed bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The read buffer grows up to this (the head limit, at least the initial size).
    buf_cap: usize,
    state: State,
    /// `100 Continue` was asked for and is still to be sent.
    continue_due: bool,
    /// What the current (or last) body holds of the budget. Given back when the next head
    /// starts: the caller steps again only after it dropped the previous request and its body.
    charged: Vec<Reservation>,
    /// The limits of the current body (`max_body_bytes` depends on the path).
    body_limits: Limits,
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        let buf_cap = limits.max_head_bytes.max(INITIAL_BUFFER_BYTES);
        Framer {
            buf: vec![0; INITIAL_BUFFER_BYTES],
            start: 0,
            end: 0,
            buf_cap,
            state: State::Head(HeadScanner::default()),
            continue_due: false,
            charged: Vec::new(),
            body_limits: limits.clone(),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Frames as far as the buffered bytes allow.
    pub fn step(&mut self) -> Result<Step, Rejection> {
        let result = self.advance();
        if result.is_err() {
            self.state = State::Refused;
        }
        result
    }

    fn advance(&mut self) -> Result<Step, Rejection> {
        if std::mem::take(&mut self.continue_due) {
            return Ok(Step::SendContinue);
        }
        loop {
            match &mut self.state {
                State::Head(scanner) => {
                    // The previous request, with its body, is gone (see `charged`).
                    self.charged.clear();
                    let pending = self.buf.get(self.start..self.end).unwrap_or_default();
                    let head_end = match scanner.scan(pending, &self.limits) {
                        Ok(Some(end)) => end,
                        Ok(None) => return Ok(Step::NeedMore),
                        Err(response) => {
                            return Err(Rejection {
                                response,
                                path: None,
                            })
                        }
                    };
                    let head_bytes = pending
                        .get(scanner.head_start..head_end)
                        .unwrap_or_default();
                    let head = parse_head(head_bytes, scanner.header_count(), &self.limits)
                        .map_err(|response| Rejection {
                            response,
                            path: path_of(head_bytes),
                        })?;
                    self.start += head_end;
                    self.state = State::Parsed(head);
                    return Ok(Step::Head);
                }
                State::Parsed(head) => {
                    let need = match head.framing {
                        BodyFraming::Length(len) if len > UNCHARGED_BODY_BYTES => len,
                        BodyFraming::Length(_) | BodyFraming::Chunked => 0,
                    };
                    let charged = self.charged_bytes();
                    if need > charged {
                        return Ok(Step::NeedBudget(need - charged));
                    }
                    if let State::Parsed(head) = std::mem::replace(&mut self.state, State::Refused)
                    {
                        self.start_body(head);
                    }
                }
                State::Sized { filled, body, .. } => {
                    if *filled < body.len() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Request(self.finish()));
                }
                State::Chunked {
                    head,
                    decoder,
                    body,
                } => {
                    let pending = self.buf.get(self.start..self.end).unwrap_or_default();
                    // Decoding never yields more bytes than it consumes: the body grows by at
                    // most what is buffered. Past the uncharged size, it must be covered first.
                    let want = body
                        .len()
                        .saturating_add(pending.len())
                        .min(self.body_limits.max_body_bytes);
                    let charged: usize = self.charged.iter().map(Reservation::bytes).sum();
                    let covered = if charged == 0 {
                        UNCHARGED_BODY_BYTES
                    } else {
                        charged
                    };
                    if want > covered {
                        // Doubling, so a body arriving in small reads asks a few times only.
                        let target = want
                            .max(covered.saturating_mul(2))
                            .min(self.body_limits.max_body_bytes);
                        return Ok(Step::NeedBudget(target - charged));
                    }
                    let goal = want.max(body.capacity().saturating_mul(2)).min(covered);
                    if goal > body.capacity() {
                        body.reserve_exact(goal - body.len());
                    }
                    let (used, done) =
                        decoder
                            .feed(pending, body, &self.body_limits)
                            .map_err(|response| Rejection {
                                response,
                                path: Some(head.path().to_owned()),
                            })?;
                    self.start += used;
                    if done {
                        return Ok(Step::Request(self.finish()));
                    }
                    // Everything buffered was decoded: the next read may use the whole buffer.
                    self.start = 0;
                    self.end = 0;
                    return Ok(Step::NeedMore);
                }
                State::Refused => {
                    return Err(Rejection::new(
                        Status::BadRequest,
                        "the request stream cannot be framed after a refusal",
                        None,
                    ))
                }
            }
            if std::mem::take(&mut self.continue_due) {
                return Ok(Step::SendContinue);
            }
        }
    }

    /// Moves from a checked head to its body. A body already buffered in full is cut out of
    /// the buffer; otherwise a sized body gets a buffer of its own (within the limit, checked
    /// by `parse_head`) that the socket fills directly.
    fn start_body(&mut self, head: Head) {
        self.body_limits = self.limits.for_body_of(head.path());
        let buffered = self.end - self.start;
        // RFC 9110, section 10.1.1: only a client that has not started the body waits for it.
        self.continue_due = head.expect_continue && buffered == 0;
        self.state = match head.framing {
            BodyFraming::Length(len) if buffered >= len => {
                let body = self
                    .buf
                    .get(self.start..self.start + len)
                    .unwrap_or_default()
                    .to_vec();
                self.start += len;
                self.continue_due = false;
                State::Sized {
                    head,
                    body,
                    filled: len,
                }
            }
            BodyFraming::Length(len) => {
                let mut body = vec![0; len];
                if let (Some(dst), Some(src)) =
                    (body.get_mut(..buffered), self.buf.get(self.start..self.end))
                {
                    dst.copy_from_slice(src);
                }
                self.start = 0;
                self.end = 0;
                State::Sized {
                    head,
                    body,
                    filled: buffered,
                }
            }
            BodyFraming::Chunked => State::Chunked {
                head,
                decoder: ChunkedDecoder::default(),
                body: Vec::new(),
            },
        };
    }

    /// The request whose body is complete; the framer is ready for the next head.
    fn finish(&mut self) -> Request {
        let state = std::mem::replace(&mut self.state, State::Head(HeadScanner::default()));
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // An idle connection holds only a small buffer, whatever its last head needed.
            if self.buf.len() > INITIAL_BUFFER_BYTES {
                self.buf = vec![0; INITIAL_BUFFER_BYTES];
            }
        }
        match state {
            State::Sized { head, body, .. } | State::Chunked { head, body, .. } => {
                head.into_request(body)
            }
            State::Head(_) | State::Parsed(_) | State::Refused => {
                unreachable!("finish is called with a body")
            }
        }
    }

    /// Adds budget for the current body, as asked by [`Step::NeedBudget`].
    pub fn grant(&mut self, reservation: Reservation) {
        self.charged.push(reservation);
    }

    fn charged_bytes(&self) -> usize {
        self.charged.iter().map(Reservation::bytes).sum()
    }

    /// The head of the request being read, once it is complete.
    pub fn head(&self) -> Option<RequestHead<'_>> {
        match &self.state {
            State::Parsed(head) | State::Sized { head, .. } | State::Chunked { head, .. } => {
                Some(head.view())
            }
            State::Head(_) | State::Refused => None,
        }
    }

    /// Ends framing on this connection (it is closing): the body buffer and its budget are given
    /// back at once, and the read buffer is returned as scratch space for draining input.
    pub fn discard(&mut self) -> &mut [u8] {
        self.state = State::Refused;
        self.charged.clear();
        self.start = 0;
        self.end = 0;
        if self.buf.len() > INITIAL_BUFFER_BYTES {
            self.buf = vec![0; INITIAL_BUFFER_BYTES];
        }
        &mut self.buf
    }

    /// Where the next bytes from the client go; never empty.
    pub fn space(&mut self) -> Result<&mut [u8], Rejection> {
        if !matches!(self.state, State::Sized { .. }) && !self.make_room() {
            // The scanner refuses a head at the limit before the buffer is full, and a chunked
            // body empties the buffer before asking for more: this is a safety net.
            return Err(Rejection::new(
                Status::RequestHeaderFieldsTooLarge,
                "request head is too large",
                None,
            ));
        }
        Ok(match &mut self.state {
            State::Sized { body, filled, .. } => body.get_mut(*filled..).unwrap_or_default(),
            _ => self.buf.get_mut(self.end..).unwrap_or_default(),
        })
    }

    /// Takes `n` bytes written into the start of [`Framer::space`].
    pub fn filled(&mut self, n: usize) {
        match &mut self.state {
            State::Sized { body, filled, .. } => *filled = (*filled + n).min(body.len()),
            _ => self.end = (self.end + n).min(self.buf.len()),
        }
    }

    /// Bytes received and not yet framed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Head(_) if self.start == self.end => Phase::Idle,
            State::Head(_) | State::Refused => Phase::Head,
            State::Parsed(_) | State::Sized { .. } | State::Chunked { .. } => Phase::Body,
        }
    }

    /// The path of the request being read, once its head is complete.
    pub fn path(&self) -> Option<&str> {
        match &self.state {
            State::Parsed(head) | State::Sized { head, .. } | State::Chunked { head, .. } => {
                Some(head.path())
            }
            State::Head(_) | State::Refused => None,
        }
    }

    /// Makes room at the end of the read buffer: compacts, or grows up to `buf_cap`.
    /// False when the buffer is full at its cap.
    fn make_room(&mut self) -> bool {
        if self.end < self.buf.len() {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        if self.buf.len() < self.buf_cap {
            let grown = self.buf.len().saturating_mul(2).min(self.buf_cap);
            self.buf.resize(grown, 0);
            return true;
        }
        false
    }
}

/// Frames one request at the start of `buf` by feeding it to a [`Framer`], as the socket loop
/// does, in pieces as large as the framer takes.
///
/// `Ok(None)`: the request is not complete yet. `Ok(Some((request, consumed)))`: the request
/// took the first `consumed` bytes; the rest belongs to the next request. `Err(rejection)`:
/// the 4xx (or 505) to send before closing. Never panics, whatever `buf` holds.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, Rejection> {
    let budget = Arc::new(BodyBudget::unlimited());
    let mut framer = Framer::new(limits.clone());
    let mut offered = 0;
    loop {
        match framer.step()? {
            Step::Request(request) => return Ok(Some((request, offered - framer.buffered()))),
            Step::SendContinue | Step::Head => {}
            Step::NeedBudget(bytes) => match budget.try_reserve(bytes) {
                Some(reservation) => framer.grant(reservation),
                None => return Err(Rejection::budget_exhausted(framer.path())),
            },
            Step::NeedMore => {
                let rest = buf.get(offered..).unwrap_or_default();
                if rest.is_empty() {
                    return Ok(None);
                }
                let space = framer.space()?;
                let n = space.len().min(rest.len());
                space[..n].copy_from_slice(&rest[..n]);
                framer.filled(n);
                offered += n;
            }
        }
    }
}

#[cfg(test)]
mod tests;
