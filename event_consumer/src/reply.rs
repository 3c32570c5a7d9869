//! Where a request waits for its outcome: one [`Reply`] slot per connection, reused for each of
//! its requests (a connection has at most one with the pipeline). The thread that stores the
//! request's task fills the slot through the [`ReplyTo`] its job carries; the connection thread
//! waits on it and writes the answer itself. Plain data: no socket, no answer handle crosses to
//! the storing thread.
//!
//! Wake-ups cost CPU, so the filling thread notifies only when the connection thread already
//! waits. A `ReplyTo` dropped unfilled (a bug, a panic while storing) fills the slot with
//! [`Outcome::Internal`] (a 500), so the connection never waits forever for it.
//!
//! A stop that cannot wait any longer (the database does not answer) abandons the slots: a
//! waiting connection thread sees the pipeline's abandon flag within [`ABANDON_POLL`] and
//! answers 503 itself. A connection thread that stores its own event (the leader path) parks
//! its connection and answer in its slot for that time, so the stop can answer for it when it
//! is stuck in the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::sync::{lock, wait_timeout};

use crate::answer::Answer;
use crate::db::Outcome;
use crate::http::Connection;

/// How often a connection thread waiting for its outcome looks at the abandon flag. Only a
/// wait this long (a slow or stuck database) ever sees it: an outcome wakes the thread at once.
pub const ABANDON_POLL: Duration = Duration::from_millis(50);

/// One connection's reply slot; see the module docs.
#[derive(Debug, Default)]
pub struct Reply {
    state: Mutex<Slot>,
    filled: Condvar,
}

#[derive(Debug, Default)]
struct Slot {
    outcome: Option<Outcome>,
    /// The connection thread waits on `filled`: the filler must wake it.
    waiting: bool,
    /// The stop gave up on this request.
    abandoned: bool,
    /// The connection thread is storing its own event: the stop may answer with these.
    parked: Option<(Connection, Answer)>,
}

impl Reply {
    /// Puts the outcome of the request in the slot; wakes the connection thread if it waits.
    fn fill(&self, outcome: Outcome) {
        let mut slot = lock(&self.state);
        slot.outcome = Some(outcome);
        let wake = slot.waiting;
        drop(slot);
        if wake {
            self.filled.notify_one();
        }
    }

    /// Waits for the outcome; `None` when the stop abandoned the request (the pipeline's
    /// `abandoned` flag, or this slot's) first.
    pub fn wait(&self, abandoned: &AtomicBool) -> Option<Outcome> {
        let mut slot = lock(&self.state);
        loop {
            if let Some(outcome) = slot.outcome.take() {
                slot.waiting = false;
                return Some(outcome);
            }
            if slot.abandoned || abandoned.load(Ordering::SeqCst) {
                slot.waiting = false;
                return None;
            }
            slot.waiting = true;
            slot = wait_timeout(&self.filled, slot, ABANDON_POLL);
        }
    }

    /// Parks the connection while its own thread stores its event (see the module docs).
    pub fn park(&self, conn: Connection, answer: Answer) {
        lock(&self.state).parked = Some((conn, answer));
    }

    /// Takes the connection back after storing; `None` when the stop answered for it meanwhile.
    pub fn unpark(&self) -> Option<(Connection, Answer)> {
        lock(&self.state).parked.take()
    }

    /// Gives up on the request: wakes a waiting connection thread (it answers 503), or returns
    /// the parked connection, which the caller answers on.
    pub fn abandon(&self) -> Option<(Connection, Answer)> {
        let mut slot = lock(&self.state);
        slot.abandoned = true;
        let parked = slot.parked.take();
        let wake = slot.waiting;
        drop(slot);
        if wake {
            self.filled.notify_one();
        }
        parked
    }
}

/// The storing side of a slot, carried by a queued job. See the module docs.
#[derive(Debug)]
pub struct ReplyTo(Option<Arc<Reply>>);

impl ReplyTo {
    pub fn new(reply: &Arc<Reply>) -> ReplyTo {
        ReplyTo(Some(Arc::clone(reply)))
    }

    pub fn send(mut self, outcome: Outcome) {
        if let Some(reply) = self.0.take() {
            reply.fill(outcome);
        }
    }

    /// Gives up on the request (a queued job at a stop that cannot wait).
    pub fn abandon(mut self) {
        if let Some(reply) = self.0.take() {
            reply.abandon();
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            log::error!("a request's outcome was dropped unfilled (a bug); answered 500");
            reply.fill(Outcome::Internal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::thread;

    #[test]
    fn a_waiting_connection_is_woken_by_its_outcome() {
        let reply = Arc::new(Reply::default());
        let to = ReplyTo::new(&reply);
        let filler = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            to.send(Outcome::Ready);
        });
        assert_eq!(reply.wait(&AtomicBool::new(false)), Some(Outcome::Ready));
        filler.join().unwrap();
    }

    #[test]
    fn an_outcome_dropped_unfilled_is_an_internal_error() {
        let reply = Arc::new(Reply::default());
        drop(ReplyTo::new(&reply));
        assert_eq!(reply.wait(&AtomicBool::new(false)), Some(Outcome::Internal));
    }

    #[test]
    fn a_wait_ends_without_an_outcome_once_the_stop_abandons_it() {
        let reply = Arc::new(Reply::default());
        let _held = ReplyTo::new(&reply);
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (reply, flag) = (Arc::clone(&reply), Arc::clone(&flag));
            thread::spawn(move || reply.wait(&flag))
        };
        thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::SeqCst);
        assert_eq!(waiter.join().unwrap(), None);
        std::mem::forget(_held);
    }
}
