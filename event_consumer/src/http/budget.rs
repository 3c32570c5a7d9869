//! The body budget: how many bytes of request bodies all connections together may hold in
//! memory ([`MAX_BUFFERED_BODY_BYTES`], or the largest body a request may have when that is
//! more). A connection reserves what a body will need before it allocates and reads it; the
//! [`Reservation`] gives the bytes back when dropped.
//!
//! What is counted: the body buffer of each request whose body is over
//! [`super::UNCHARGED_BODY_BYTES`], from before it is allocated until the connection asks for
//! its next request (the request, with its body, is dropped by then) or closes. What is not:
//! smaller bodies and read buffers (bounded per connection), and the `Event` a stored body
//! becomes, which the pipeline holds until its commit (bounded by its queue's capacity).
//!
//! Without it, memory grew with the number of slow uploaders (each holding a buffer of its
//! declared `Content-Length`): issue 12 measured 175 MB for 2,000 of them.

use common::sync::{lock, wait_timeout};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// A small VM's share: 8 MiB of bodies in memory at once, whatever the number of slow
/// uploaders (2,000 of them once took 175 MB). With 2,000 such connections the rest is their
/// threads (12 KiB of stack each) and buffers: 8 MiB keeps the whole process under 48 MB
/// (tests/soak/slow_uploaders.rs).
pub const MAX_BUFFERED_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of request bodies that may be buffered at once, shared by all connections.
#[derive(Debug)]
pub struct BodyBudget {
    capacity: usize,
    /// Bytes not reserved.
    available: Mutex<usize>,
    /// Notified whenever bytes come back.
    released: Condvar,
}

impl BodyBudget {
    pub fn new(capacity: usize) -> BodyBudget {
        BodyBudget {
            capacity,
            available: Mutex::new(capacity),
            released: Condvar::new(),
        }
    }

    /// A budget nothing runs out of, for framing without a server (the fuzz target, tests).
    pub fn unlimited() -> BodyBudget {
        BodyBudget::new(usize::MAX)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes reserved at the moment (for tests and metrics).
    pub fn reserved(&self) -> usize {
        self.capacity - *lock(&self.available)
    }

    /// Reserves `bytes` at once if they are free.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut available = lock(&self.available);
        take(&mut available, bytes).then(|| Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Reserves `bytes`, waiting until `deadline` for other connections to give some back.
    /// None when they were not free in time, or can never be (more than the whole budget).
    pub fn reserve_before(
        self: &Arc<Self>,
        bytes: usize,
        deadline: Instant,
    ) -> Option<Reservation> {
        if bytes > self.capacity {
            return None;
        }
        let mut available = lock(&self.available);
        loop {
            if take(&mut available, bytes) {
                return Some(Reservation {
                    budget: Arc::clone(self),
                    bytes,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            available = wait_timeout(&self.released, available, left);
        }
    }

    fn give_back(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut available = lock(&self.available);
        *available = available.saturating_add(bytes).min(self.capacity);
        drop(available);
        // Every waiter looks again: the bytes may fit a small body but not the first in line.
        self.released.notify_all();
    }
}

fn take(available: &mut usize, bytes: usize) -> bool {
    if *available >= bytes {
        *available -= bytes;
        true
    } else {
        false
    }
}

/// Bytes taken from a [`BodyBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reserved_bytes_come_back_when_the_reservation_is_dropped() {
        let budget = Arc::new(BodyBudget::new(100));
        let first = budget.try_reserve(60).expect("60 of 100 are free");
        assert_eq!(budget.reserved(), 60);
        assert!(budget.try_reserve(41).is_none(), "only 40 are left");
        let second = budget.try_reserve(40).expect("40 are left");
        drop(first);
        assert_eq!(budget.reserved(), 40);
        drop(second);
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn a_waiting_reservation_is_granted_when_another_connection_gives_bytes_back() {
        let budget = Arc::new(BodyBudget::new(100));
        let held = budget.try_reserve(100).expect("the whole budget is free");
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                budget.reserve_before(50, deadline).map(|r| r.bytes())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(waiter.join().expect("the waiter does not panic"), Some(50));
    }

    #[test]
    fn a_reservation_that_does_not_fit_in_time_or_ever_is_refused() {
        let budget = Arc::new(BodyBudget::new(100));
        let _held = budget.try_reserve(80).expect("80 of 100 are free");
        assert!(budget.reserve_before(30, Instant::now()).is_none());
        assert!(budget.reserve_before(101, Instant::now()).is_none());
        assert_eq!(budget.reserved(), 80);
    }
}
