//! The batches the database is working on, with the time by which their requests must have an
//! answer: [`Database::answer_within`](crate::db::Database::answer_within) after the oldest
//! request was read (`statement_timeout_seconds` and a margin).
//!
//! The server cancels a statement that runs past `statement_timeout` and the TCP user timeout
//! cuts a connection the network silently dropped, but a server whose kernel still answers
//! while its process does not (a stopped backend, storage that hangs, a frozen VM's host
//! acknowledging for it) is never given up by either, and the driver's calls cannot be
//! bounded from outside: the thread storing the batch waits as long as the server does. So the
//! requests are answered without it: the pipeline's deadline thread takes the expired batches
//! from here and answers their requests 503 through their writers
//! ([`Writer::abandon`], which closes the connection so the late answer goes nowhere). Such a
//! batch may still be committed later; a retry with the same `Idempotency-Key` is safe.
//!
//! One lock taken twice per batch (watch and done), none per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sync::lock;

use crate::answer::Answer;
use crate::http::Writer;

/// How often the deadline thread looks: an expired request is answered at most this late.
pub const DEADLINE_TICK: Duration = Duration::from_millis(100);

/// The batches being stored; see the module docs.
#[derive(Debug, Default)]
pub struct InFlight {
    batches: Mutex<Vec<Watched>>,
}

#[derive(Debug)]
struct Watched {
    /// The database connection storing it (one batch per connection at a time).
    connection: usize,
    /// When its requests are due: `limit` after the oldest was read.
    deadline: Instant,
    /// When the database stopped answering, unless it answers first: `limit` after the batch
    /// was sent. A server that is alive has cancelled the statement by then.
    stalled: Instant,
    /// Its requests' connections; empty once they were answered 503.
    writers: Vec<Arc<Writer>>,
    reported: bool,
}

/// What [`InFlight::expire`] found.
#[derive(Debug, Default)]
pub struct Expired {
    /// The connections of the requests past their deadline.
    pub writers: Vec<Arc<Writer>>,
    /// Batches the database has not answered for `limit` (each reported once).
    pub stalled: usize,
}

/// Removes its batch when the batch returned from the database, however it returned.
#[derive(Debug)]
pub struct Watch<'a> {
    in_flight: &'a InFlight,
    connection: usize,
}

impl InFlight {
    /// Watches the batch that `connection` stores now for `answers`, due `limit` after the
    /// oldest of them was read.
    pub fn watch(&self, connection: usize, answers: &[Answer], limit: Duration) -> Watch<'_> {
        let now = Instant::now();
        let oldest = answers.iter().map(Answer::waiting_since).min();
        let writers = answers.iter().map(|a| Arc::clone(a.writer())).collect();
        lock(&self.batches).push(Watched {
            connection,
            deadline: oldest.unwrap_or(now) + limit,
            stalled: now + limit,
            writers,
            reported: false,
        });
        Watch {
            in_flight: self,
            connection,
        }
    }

    /// Takes the writers of the requests whose deadline passed at `now`, and counts the
    /// batches that stalled since the last call.
    pub fn expire(&self, now: Instant) -> Expired {
        let mut expired = Expired::default();
        for batch in lock(&self.batches).iter_mut() {
            if now >= batch.deadline {
                expired.writers.append(&mut batch.writers);
            }
            if now >= batch.stalled && !batch.reported {
                batch.reported = true;
                expired.stalled += 1;
            }
        }
        expired
    }

    /// Batches the database has not answered for `limit` at `now`.
    pub fn stalled(&self, now: Instant) -> usize {
        lock(&self.batches)
            .iter()
            .filter(|batch| now >= batch.stalled)
            .count()
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        lock(&self.in_flight.batches).retain(|batch| batch.connection != self.connection);
    }
}
