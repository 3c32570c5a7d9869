//! A throwaway cluster for one test process: a [`PgDir`] in a temporary directory, on a free
//! port, that cannot outlive the process.
//!
//! A guardian shell holds a pipe from the test process: when the process ends, however it
//! ends, the pipe closes and the guardian stops the server and deletes the directory.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::pg_dir::{Durability, PgDir, StopMode};
use crate::pki::CertFiles;
use crate::port::free_port;
use crate::test_db::Server;

/// A PostgreSQL cluster of our own: initdb into a temporary directory, a free port.
/// Tests that stop and restart the database use one of these directly.
#[derive(Debug)]
pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    pg: PgDir,
    guardian: Option<(Child, ChildStdin)>,
}

impl Cluster {
    /// Starts a new cluster with fsync off (tests only; benchmarks never turn it off).
    pub fn start() -> Cluster {
        Cluster::start_with(Durability::Off, None)
    }

    /// Starts a new cluster with PostgreSQL's default durability.
    pub fn start_durable() -> Cluster {
        Cluster::start_with(Durability::Full, None)
    }

    /// Starts a new cluster (fsync off) that offers TLS with `server`'s certificate (see
    /// [`PgDir::enable_tls`]); plain-text connections are still accepted.
    pub fn start_with_tls(server: &CertFiles) -> Cluster {
        Cluster::start_with(Durability::Off, Some(server))
    }

    /// Starts a hot standby of `primary` (read-only, streaming its WAL) in a directory and on
    /// a port of its own: a base backup of the primary as it is now, so every database on it
    /// is there too. Costs a checkpoint and a copy of the primary (a few MB for a test
    /// cluster): reuse it within a test.
    pub fn start_standby(primary: &Cluster) -> Cluster {
        let cluster = Cluster::new_dir();
        cluster
            .pg
            .init_standby_of(primary.port, cluster.port)
            .and_then(|()| cluster.pg.start())
            .unwrap_or_else(|e| panic!("cannot start a standby of the test cluster: {e}"));
        cluster
    }

    /// Promotes this standby to a primary, waiting until it takes writes.
    pub fn promote(&self) {
        self.pg
            .promote()
            .unwrap_or_else(|e| panic!("cannot promote the test standby: {e}"));
    }

    /// Panics with the harness's message (which says how to fix it) when anything fails; the
    /// guardian is started first, so even a half-made cluster is removed.
    fn start_with(durability: Durability, tls: Option<&CertFiles>) -> Cluster {
        let cluster = Cluster::new_dir();
        cluster
            .pg
            .init(cluster.port, durability)
            .and_then(|()| tls.map_or(Ok(()), |server| cluster.pg.enable_tls(server)))
            .and_then(|()| cluster.pg.start())
            .unwrap_or_else(|e| panic!("cannot start a test cluster: {e}"));
        cluster
    }

    /// A cluster directory not made yet and a free port, with its guardian already watching.
    fn new_dir() -> Cluster {
        let base = std::env::var_os("EVENTS_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = base.join(format!("evtest-pg-{}-{nanos}", std::process::id()));
        let pg = PgDir::new(&dir).unwrap_or_else(|e| {
            panic!("{e} (or set DATABASE_URL=postgres://user:password@host:port/postgres)")
        });
        let mut cluster = Cluster {
            port: free_port(),
            dir,
            pg,
            guardian: None,
        };
        cluster.spawn_guardian();
        cluster
    }

    pub fn server(&self) -> Server {
        Server {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: String::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.pg.data()
    }

    /// Stops the server; `mode` is pg_ctl's: "fast" or "immediate".
    pub fn stop(&self, mode: &str) {
        let mode = StopMode::from_name(mode).unwrap_or_else(|e| panic!("{e}"));
        self.pg
            .stop(mode)
            .unwrap_or_else(|e| panic!("cannot stop the test cluster: {e}"));
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn pg_ctl_start(&self) {
        self.pg
            .start()
            .unwrap_or_else(|e| panic!("cannot start the test cluster again: {e}"));
    }

    /// The guardian waits for our end of its stdin to close (test process exit or `Drop`),
    /// then stops the server and removes the directory. It ignores SIGINT so Ctrl-C on the
    /// test run still cleans up.
    fn spawn_guardian(&mut self) {
        let pg_ctl = self.pg.bindir().join("pg_ctl");
        let stop: Vec<String> = self
            .pg
            .user()
            .argv(&pg_ctl)
            .iter()
            .map(|word| sh_quote(word))
            .collect();
        let script = format!(
            "trap '' INT TERM; cd /; cat >/dev/null; \
             {stop} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {dir}",
            stop = stop.join(" "),
            data = sh_quote(self.pg.data().as_os_str()),
            dir = sh_quote(self.dir.as_os_str()),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the cluster's guardian shell (sh)");
        let stdin = child.stdin.take().unwrap();
        self.guardian = Some((child, stdin));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.guardian.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// `word` in single quotes for sh, with each `'` closed, escaped and reopened.
fn sh_quote(word: &OsStr) -> String {
    let word = String::from_utf8_lossy(word.as_bytes());
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_in_a_path_survives_the_shell() {
        assert_eq!(sh_quote(OsStr::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}
