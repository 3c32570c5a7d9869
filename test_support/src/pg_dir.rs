//! A PostgreSQL cluster in a directory of its own: initdb, start, stop, restart. The tests'
//! [`Cluster`](crate::Cluster) and the scripts' `pg_cluster` both drive this, so there is one
//! way to lay out, configure and start a throwaway server.
//!
//! Layout: `<dir>/data` (the cluster), `<dir>/server.log`, and the Unix socket in `<dir>`, so
//! it never meets a system PostgreSQL's socket in /var/run/postgresql.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bindir::find_bindir;
use crate::error::{io_error, HarnessError};
use crate::pki::CertFiles;
use crate::process::run;
use crate::run_as::ServerUser;

/// Connections the server accepts: the consumer's pool and 64 wrk connections in bench next to
/// 32 pgbench clients, or a test binary's parallel tests, each with a few clients.
const MAX_CONNECTIONS: u32 = 300;

/// How long pg_ctl waits for the server to start or stop; crash recovery after an immediate
/// stop on a loaded, shared machine can take many seconds.
const PG_CTL_WAIT_SECONDS: &str = "60";

/// Whether the server makes commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: fsync, synchronous_commit and full_page_writes on. Benchmarks and
    /// chaos runs use only this: their figures and crash checks mean nothing without it.
    Full,
    /// fsync, synchronous_commit and full_page_writes off: for tests only, which lose nothing
    /// but time when the machine crashes.
    Off,
}

impl Durability {
    /// Parses `pg_cluster`'s `--fsync on|off`.
    pub fn from_fsync(s: &str) -> Result<Durability, HarnessError> {
        let choices = [("on", Durability::Full), ("off", Durability::Off)];
        choose(s, "--fsync", &choices)
    }
}

/// pg_ctl's shutdown modes that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnects clients and shuts down cleanly (a checkpoint).
    Fast,
    /// Kills the server: the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    const NAMES: [(&'static str, StopMode); 2] =
        [("fast", StopMode::Fast), ("immediate", StopMode::Immediate)];

    /// Parses pg_ctl's name of the mode: fast or immediate.
    pub fn from_name(s: &str) -> Result<StopMode, HarnessError> {
        choose(s, "the stop mode (--mode)", &StopMode::NAMES)
    }

    fn as_str(self) -> &'static str {
        StopMode::NAMES
            .iter()
            .find(|(_, mode)| *mode == self)
            .map_or("fast", |(name, _)| name)
    }
}

impl fmt::Display for StopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value named `s` among `choices`, or an error that lists them.
fn choose<T: Copy>(s: &str, what: &str, choices: &[(&str, T)]) -> Result<T, HarnessError> {
    choices
        .iter()
        .find(|(name, _)| *name == s)
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            HarnessError::Invalid {
                what: format!("{what} takes {}, not `{s}`", names.join(" or ")),
            }
        })
}

/// A cluster directory and how to run the server binaries for it.
#[derive(Debug, Clone)]
pub struct PgDir {
    dir: PathBuf,
    bindir: PathBuf,
    user: ServerUser,
}

impl PgDir {
    /// The cluster in `dir` (which need not exist yet), with the binaries [`find_bindir`] finds.
    pub fn new(dir: impl Into<PathBuf>) -> Result<PgDir, HarnessError> {
        let dir = dir.into();
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir()
                .map_err(io_error("cannot read the working directory"))?
                .join(dir)
        };
        Ok(PgDir {
            dir,
            bindir: find_bindir()?,
            user: ServerUser::detect()?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    pub fn user(&self) -> ServerUser {
        self.user
    }

    /// Whether initdb has made a cluster here.
    pub fn exists(&self) -> bool {
        self.data().join("PG_VERSION").is_file()
    }

    /// A command for one of the server binaries, run as the server's user.
    pub fn command(&self, program: &str) -> Command {
        self.user.command(&self.bindir.join(program))
    }

    /// Creates the cluster: superuser `postgres` with trust authentication (loopback and a
    /// socket in its own directory only), UTF8 without a locale, listening on 127.0.0.1:`port`.
    pub fn init(&self, port: u16, durability: Durability) -> Result<(), HarnessError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_error(format!("cannot create {}", self.dir.display())))?;
        self.user.take_ownership(&self.dir)?;
        self.user.check_can_enter(&self.dir)?;
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(self.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        if durability == Durability::Off {
            // Nothing of a test cluster needs to survive a crash, so initdb need not wait for
            // the disk either.
            initdb.arg("--no-sync");
        }
        run(&mut initdb, "initdb")?;
        let mut lines = vec![
            format!("port = {port}"),
            "listen_addresses = '127.0.0.1'".to_owned(),
            format!("unix_socket_directories = '{}'", self.dir.display()),
            format!("max_connections = {MAX_CONNECTIONS}"),
            "log_min_messages = warning".to_owned(),
        ];
        if durability == Durability::Off {
            lines.extend(
                [
                    "fsync = off",
                    "synchronous_commit = off",
                    "full_page_writes = off",
                ]
                .map(String::from),
            );
        }
        let conf = self.data().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_error(format!("cannot open {}", conf.display())))?;
        writeln!(
            file,
            "\n# A throwaway cluster (test_support's pg_dir.rs).\n{}",
            lines.join("\n")
        )
        .map_err(io_error(format!("cannot write {}", conf.display())))
    }

    /// Makes this directory a hot standby of the server on 127.0.0.1:`primary_port`:
    /// `pg_basebackup -R` (a copy streaming WAL from the primary, `standby.signal` and
    /// `primary_conninfo` written), then its own port and socket directory. The primary needs
    /// nothing beyond initdb's defaults: `wal_level = replica`, 10 WAL senders, and pg_hba's
    /// `replication` lines for loopback with trust. Start it with [`PgDir::start`].
    pub fn init_standby_of(&self, primary_port: u16, port: u16) -> Result<(), HarnessError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_error(format!("cannot create {}", self.dir.display())))?;
        self.user.take_ownership(&self.dir)?;
        self.user.check_can_enter(&self.dir)?;
        let mut backup = self.command("pg_basebackup");
        backup
            .arg("-D")
            .arg(self.data())
            .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "--checkpoint=fast"])
            .arg("--no-sync");
        run(&mut backup, "pg_basebackup")?;
        // The copied postgresql.conf names the primary's port and socket directory; the later
        // lines win.
        self.append_conf(&format!(
            "\n# A standby (PgDir::init_standby_of).\nport = {port}\nunix_socket_directories = '{}'",
            self.dir.display()
        ))
    }

    /// Promotes a standby to a primary and waits until it takes writes (pg_ctl promote -w).
    pub fn promote(&self) -> Result<(), HarnessError> {
        self.pg_ctl("promote", None)
    }

    /// Turns TLS on (`ssl = on`) with `server`'s certificate and key, copied into the cluster's
    /// directory: the key owned by the server's user and readable by it only, which PostgreSQL
    /// demands. Call it after [`PgDir::init`], before [`PgDir::start`]. Clients may still
    /// connect without TLS (pg_hba's `host` lines), as the harness's own do.
    pub fn enable_tls(&self, server: &CertFiles) -> Result<(), HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        let cert = self.dir.join("server.crt");
        let key = self.dir.join("server.key");
        for (from, to, mode) in [(&server.cert, &cert, 0o644), (&server.key, &key, 0o600)] {
            std::fs::copy(from, to).map_err(io_error(format!(
                "cannot copy {} to {}",
                from.display(),
                to.display()
            )))?;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
                .map_err(io_error(format!("cannot chmod {}", to.display())))?;
            self.user.take_ownership(to)?;
        }
        let lines = [
            "ssl = on".to_owned(),
            format!("ssl_cert_file = '{}'", cert.display()),
            format!("ssl_key_file = '{}'", key.display()),
        ];
        self.append_conf(&format!(
            "\n# TLS (PgDir::enable_tls).\n{}",
            lines.join("\n")
        ))
    }

    fn append_conf(&self, text: &str) -> Result<(), HarnessError> {
        let conf = self.data().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_error(format!("cannot open {}", conf.display())))?;
        writeln!(file, "{text}").map_err(io_error(format!("cannot write {}", conf.display())))
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), HarnessError> {
        self.pg_ctl("start", None)
    }

    /// Stops the server and waits until it is gone; a server that is not running is no error.
    pub fn stop(&self, mode: StopMode) -> Result<(), HarnessError> {
        if !self.is_running() {
            return Ok(());
        }
        self.pg_ctl("stop", Some(mode))
    }

    /// Stops the server in `mode` and starts it again on the same port.
    pub fn restart(&self, mode: StopMode) -> Result<(), HarnessError> {
        self.pg_ctl("restart", Some(mode))
    }

    /// `pg_ctl ACTION`, waiting for it to finish; the server's log goes to [`PgDir::log`].
    fn pg_ctl(&self, action: &str, mode: Option<StopMode>) -> Result<(), HarnessError> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl.arg("-D").arg(self.data()).arg("-l").arg(self.log());
        if let Some(mode) = mode {
            pg_ctl.args(["-m", mode.as_str()]);
        }
        pg_ctl.args(["-w", "-t", PG_CTL_WAIT_SECONDS, action]);
        run(&mut pg_ctl, &format!("pg_ctl {action}")).map_err(|e| self.with_log_tail(e))?;
        Ok(())
    }

    /// Whether a server runs on this cluster (pg_ctl status).
    pub fn is_running(&self) -> bool {
        if !self.data().join("postmaster.pid").is_file() {
            return false;
        }
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl.arg("-D").arg(self.data()).arg("status");
        run(&mut pg_ctl, "pg_ctl status").is_ok()
    }

    /// The port the running server listens on: line 4 of postmaster.pid.
    pub fn running_port(&self) -> Option<u16> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    /// A failed start says why only in the server's log: its last lines go into the error.
    fn with_log_tail(&self, error: HarnessError) -> HarnessError {
        let HarnessError::Failed {
            what,
            status,
            output,
        } = error
        else {
            return error;
        };
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        HarnessError::Failed {
            what,
            status,
            output: format!(
                "{}\n{} ends with:\n{}",
                output.trim(),
                self.log().display(),
                tail.join("\n")
            ),
        }
    }
}
