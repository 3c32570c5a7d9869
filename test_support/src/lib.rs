//! Test-only support: the one harness for a throwaway PostgreSQL, used by the test suites, by
//! `make chaos`, `make bench` and the local cluster of `make` (through the `pg_cluster` binary).
//!
//! - [`find_bindir`]: where the server binaries are.
//! - [`ServerUser`]: who runs them (`postgres` when we are root: PostgreSQL refuses root).
//! - [`free_port`] / [`free_ports`]: loopback ports nothing listens on, picked below the
//!   kernel's range for outgoing connections.
//! - [`PgDir`]: a cluster in a directory: initdb, start, stop, restart.
//! - [`Cluster`]: a `PgDir` in a temporary directory that cannot outlive the test process.
//! - [`TestDb`]: a fresh database with `schema.sql` per test, dropped afterwards.
//! - [`Pki`]: a test CA and the certificates it signs, as PEM files (TLS tests).
//! - [`Blackhole`]: one direction of a loopback port made silent (iptables, as root).
//! - [`privileged`]: how a test that needs root skips, or fails where CI requires it.
//! - [`timing`]: a timing bound measured up to three times on a shared machine.
//!
//! Tests may turn fsync off ([`Cluster::start`]); benchmarks and chaos never do. It does not
//! manage a long-lived server: the cluster of `make` in `.local/pg` is scripts/local-pg.sh's,
//! which uses only the binaries, the user and the port check from here.
#![forbid(unsafe_code)]

mod bindir;
mod blackhole;
mod cluster;
mod error;
mod pg_dir;
mod pki;
mod port;
pub mod privileged;
mod process;
mod run_as;
mod test_db;
pub mod timing;

use std::path::{Path, PathBuf};

pub use bindir::find_bindir;
pub use blackhole::Blackhole;
pub use cluster::Cluster;
pub use error::HarnessError;
pub use pg_dir::{Durability, PgDir, StopMode};
pub use pki::{CertFiles, Pki};
pub use port::{free_port, free_ports, port_is_free};
pub use run_as::ServerUser;
pub use test_db::{shared_server, Server, TestDb};

/// The schema the services expect, the same file `db_init_script.sh` applies.
pub fn schema_sql() -> &'static str {
    include_str!("../../schema.sql")
}

/// The repository root, for tests that run the shipped scripts and files.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` (see [`find_bindir`]). Panics with
/// how to get them when none is found.
pub fn pg_bindir() -> PathBuf {
    find_bindir().unwrap_or_else(|e| {
        panic!("{e} (or set DATABASE_URL=postgres://user:password@host:port/postgres)")
    })
}
