//! How a request is answered, as a value: an [`Answer`] is made by the connection thread as
//! soon as it has read a request (counted in flight from then on), and [`Answer::send`] is the
//! one place that writes an answer through the connection's [`Connection`], counts it in
//! `/metrics` and ends its in-flight time. The connection thread sends every answer of its
//! connection itself, also those whose outcome a database thread found (see `crate::reply`);
//! only a stop that cannot wait any longer sends one for a connection thread stuck in the
//! database.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::http::{Connection, Response, ResponseFraming, Route};
use crate::metrics::Metrics;

/// How one request is answered; see the module docs.
#[derive(Debug)]
pub struct Answer {
    framing: ResponseFraming,
    route: Route,
    started: Instant,
    metrics: Arc<Metrics>,
    sent: bool,
}

impl Answer {
    /// An answer to the request just read; counted in flight from now.
    pub fn new(framing: ResponseFraming, route: Route, metrics: &Arc<Metrics>) -> Answer {
        metrics.in_flight.fetch_add(1, Ordering::SeqCst);
        Answer {
            framing,
            route,
            started: Instant::now(),
            metrics: Arc::clone(metrics),
            sent: false,
        }
    }

    /// Closes the connection after this answer (the service is shutting down).
    pub fn set_closing(&mut self) {
        self.framing.keep_alive = false;
    }

    /// Writes the answer on `conn`, blocking up to the write timeout; an error means the
    /// connection is broken.
    pub fn send(mut self, conn: &mut Connection, response: &Response) -> io::Result<()> {
        self.sent = true;
        // Counted before the answer leaves: a client that reads it and then asks /metrics must
        // find it counted.
        self.metrics
            .record_request(self.route, response.status, self.started.elapsed());
        let written = conn.write_response(response, self.framing);
        self.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        log::debug!("{:?} -> {}", self.route, response.status.code());
        written
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.sent {
            // Only after a bug (a panic on the connection's thread): nothing can be written
            // without the connection, but a stop must not wait for this request.
            log::error!("a request was left unanswered (a bug)");
            self.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
