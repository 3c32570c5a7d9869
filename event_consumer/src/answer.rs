//! How a request is answered, as a value: an [`Answer`] is made by the connection thread as
//! soon as it has read a request, and whoever ends up with the response, that thread or the
//! thread that stored the request's event, passes it to [`Answer::send`]. That is the one place
//! that writes an answer, counts it in `/metrics` and ends its in-flight time.
//!
//! A queued job carries its `Answer` (see [`crate::pipeline::Job`]), so the thread that commits
//! a batch answers each request right after the commit, through the connection's
//! [`Writer`], and the connection thread does not wait for the outcome: it goes back to reading
//! at once. Waking the connection thread to write every answer instead is simpler, and was
//! measured again on this code: it costs a wake-up and two context switches per queued request
//! (bench/notes/ANSWER_PATH.md).
//!
//! Exactly once: `send` takes the answer by value, and an answer dropped unsent (only after a
//! bug, e.g. a panic between queueing and answering) sends a 500 from its `Drop`, so the
//! connection never waits forever for it.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::db::Outcome;
use crate::http::{OnAnswer, Response, ResponseFraming, Route, Writer};
use crate::metrics::Metrics;
use crate::routes;

/// The reply route of one request; see the module docs.
#[derive(Debug)]
pub struct Answer {
    writer: Arc<Writer>,
    framing: ResponseFraming,
    route: Route,
    started: Instant,
    metrics: Arc<Metrics>,
    /// Handed to another thread: the connection's writes wait for it.
    handed_over: bool,
    sent: bool,
}

impl Answer {
    /// An answer to the request just read on `writer`'s connection; counted in flight from now.
    pub fn new(
        writer: &Arc<Writer>,
        framing: ResponseFraming,
        route: Route,
        metrics: &Arc<Metrics>,
    ) -> Answer {
        metrics.in_flight.fetch_add(1, Ordering::SeqCst);
        Answer {
            writer: Arc::clone(writer),
            framing,
            route,
            started: Instant::now(),
            metrics: Arc::clone(metrics),
            handed_over: false,
            sent: false,
        }
    }

    /// The connection this answer goes to: a deadline that cannot wait for the thread that
    /// owes the answer abandons it there ([`Writer::abandon`]).
    pub fn writer(&self) -> &Arc<Writer> {
        &self.writer
    }

    /// When the request was read.
    pub fn waiting_since(&self) -> Instant {
        self.started
    }

    /// Closes the connection after this answer (the service is shutting down).
    pub fn set_closing(&mut self) {
        self.framing.keep_alive = false;
    }

    /// Marks the answer as coming from another thread (the one that will store its event): the
    /// connection's own writes wait for it from now on.
    pub fn hand_over(mut self) -> Answer {
        // Counted by the writer with what the client gets: this answer, or the 503 a deadline
        // or a stop writes in its place ([`Writer::abandon`]).
        let (metrics, route, started) = (Arc::clone(&self.metrics), self.route, self.started);
        self.writer.await_answer(OnAnswer::new(move |status| {
            metrics.record_request(route, status, started.elapsed());
            metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        }));
        self.handed_over = true;
        self
    }

    /// Writes the answer. On the connection's own thread it blocks (up to the write timeout)
    /// and an error means the connection is broken; handed over, it never waits on the client
    /// and a failure shows at the connection's next write.
    pub fn send(mut self, response: &Response) -> io::Result<()> {
        self.sent = true;
        self.deliver(response)
    }

    /// Answers with the response to a job's outcome.
    pub fn send_outcome(self, outcome: &Outcome) {
        // Handed over: errors surface on the connection's thread.
        let _ = self.send(&routes::answer_to(outcome));
    }

    fn deliver(&self, response: &Response) -> io::Result<()> {
        log::debug!("{:?} -> {}", self.route, response.status.code());
        if self.handed_over {
            // Counted by the hook `hand_over` gave the writer.
            self.writer.send_awaited(response, self.framing);
            return Ok(());
        }
        // Counted before the answer leaves: a client that reads it and then asks /metrics must
        // find it counted.
        self.metrics
            .record_request(self.route, response.status, self.started.elapsed());
        let written = self.writer.send(response, self.framing);
        self.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        written
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.sent {
            log::error!("a request was left unanswered (a bug); answered 500");
            let _ = self.deliver(&routes::internal_error());
        }
    }
}
