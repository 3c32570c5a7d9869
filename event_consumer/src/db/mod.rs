//! The database layer: what to store goes in as plain data ([`Task`]), what happened comes out
//! as plain data ([`Outcome`], one per task, in order). It knows nothing of HTTP, of requests
//! waiting for an answer, or of metrics: pairing outcomes with the requests that wait for them
//! is the pipeline's, and what `/metrics` counts is handed back as numbers ([`Counts`]).
//!
//! | file | what it holds |
//! | --- | --- |
//! | `connection.rs` | [`Database`] (what every connection shares), [`DbConnection`]: one batch of tasks with one statement |
//! | `health.rs` | [`Health`]: working, or an outage with its cause, backoff and log lines; the one outage flag |
//! | `store.rs` | [`Store`]: the SQL (the only file with SQL, with `connect.rs`'s read-only check) |
//! | `connect.rs` | opening a session over the hosts of `database.host`, each bounded by `connect_timeout_seconds` |
//! | `driver_panic.rs` | the driver's panic out of file descriptors, caught as the error it should be |
//! | `session.rs` | what every session is told: timeouts and keepalives on both ends, so no end waits without bound |
//! | `readiness.rs` | [`Readiness`]: the probe of `/readyz` on a session of its own, answered within [`READY_WAIT`] |
//! | `tls.rs` | `database.sslmode` and `sslrootcert` as the driver's TLS connector (rustls) |

mod connect;
mod connection;
mod driver_panic;
mod health;
mod readiness;
pub mod session;
pub mod store;
mod tls;

use common::batch::BatchItem;
use common::Event;

pub use connect::{HostCause, HostFailure};
pub use connection::{Counts, Database, DbConnection};
pub use health::{Health, ATTEMPT_DELAY_MAX, ATTEMPT_DELAY_MIN, REMINDER_EVERY, SETTLE};
pub use readiness::{Readiness, READY_WAIT};
pub use store::{NewEvent, Saved, Store, StoreError, StoredEvent};
pub use tls::DbTls;

/// What one request asks of the database.
#[derive(Debug)]
pub enum Task {
    Store {
        event: Event,
        idempotency_key: Option<String>,
    },
    /// Store every item, in the same transaction, or none.
    StoreBatch { items: Vec<BatchItem> },
    /// Readiness check: would a write succeed?
    Ping,
}

impl Task {
    /// Events it stores: what counts against a batch's size.
    pub fn events(&self) -> usize {
        match self {
            Task::Store { .. } => 1,
            Task::StoreBatch { items } => items.len(),
            Task::Ping => 0,
        }
    }
}

/// What the database did with one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Saved(Saved),
    /// A batch request's items, in order (all stored in one transaction).
    SavedBatch(Vec<Saved>),
    /// A ping found the database writable.
    Ready,
    /// The database cannot take it now (an outage): the client should retry.
    Unavailable,
    /// A bug (a panic, an answer that does not match the batch).
    Internal,
}
