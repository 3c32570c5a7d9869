//! The writing halves of the open connections, so that a stop that cannot wait any longer
//! (the database does not answer) can still answer the requests waiting for it.
//!
//! One lock per connection opened and closed, none per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::sync::lock;

use crate::http::{Response, Writer};

#[derive(Debug, Default)]
pub struct OpenWriters {
    next_id: AtomicU64,
    writers: Mutex<HashMap<u64, Arc<Writer>>>,
}

#[derive(Debug)]
/// Removes its connection's writer when the connection thread ends, however it ends.
pub struct Registered<'a> {
    registry: &'a OpenWriters,
    id: u64,
}

impl OpenWriters {
    pub fn register(&self, writer: &Arc<Writer>) -> Registered<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.writers).insert(id, Arc::clone(writer));
        Registered { registry: self, id }
    }

    /// Answers `response` on every connection whose answer another thread still owes
    /// ([`Writer::abandon`]) and closes those connections. Returns how many there were.
    pub fn abandon_awaited(&self, response: &Response) -> usize {
        let writers: Vec<Arc<Writer>> = lock(&self.writers).values().cloned().collect();
        writers.iter().filter(|w| w.abandon(response)).count()
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.registry.writers).remove(&self.id);
    }
}
