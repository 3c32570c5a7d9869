//! The consumer under soak sizes and wall-clock bounds: hostile clients by the thousand, the
//! systemd watchdog's timing, and the deadlines measured in milliseconds. `make soak` runs it
//! (`cargo test -p event_consumer --test soak`); plain `cargo test` does not, so that
//! `make test` stays fast, deterministic and within the default `ulimit -n` of 1024.
//!
//! Some tests here hold about 1,600 sockets: `scripts/soak.sh` raises `ulimit -n` first.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

// Shared with the `api` binary, which uses more of it than this one does.
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod abuse;
mod cgroup;
mod deadlines;
mod descriptors;
mod disk_full;
mod memory_cgroup;
mod partition;
mod retention;
mod slow_uploaders;
mod watchdog;

/// Serialises the tests that measure time against every other test of this binary. A p99, a
/// deadline or the gap between watchdog pings measured while another test floods the
/// consumer on the same two CPUs measures that other test; so a measuring test takes the
/// write half and runs alone, and the others share the read half and run side by side.
static SERIAL_WITH_TIMING_TESTS: RwLock<()> = RwLock::new(());

/// Held by a test that measures time: nothing else in this binary runs meanwhile.
fn measuring_alone() -> RwLockWriteGuard<'static, ()> {
    // A test that panicked while holding it poisons it; the next one can still run.
    SERIAL_WITH_TIMING_TESTS
        .write()
        .unwrap_or_else(|p| p.into_inner())
}

/// Held by a test that measures nothing: it runs beside the others, never beside a timing one.
fn beside_other_abuse() -> RwLockReadGuard<'static, ()> {
    SERIAL_WITH_TIMING_TESTS
        .read()
        .unwrap_or_else(|p| p.into_inner())
}
