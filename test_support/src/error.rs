//! What can go wrong while finding, starting or stopping a PostgreSQL cluster, each variant
//! saying how to fix it: the library's panics and `pg_cluster`'s one line of error both print it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// The install hint shared by every "no binaries" message.
const INSTALL_HINT: &str = "install them (Debian/Ubuntu: apt-get install postgresql; Fedora: \
     dnf install postgresql-server; macOS: brew install postgresql@15) or set PG_BINDIR to their \
     directory";

#[derive(Debug)]
pub enum HarnessError {
    /// No directory with the server binaries was found where we looked.
    NoServerBinaries,
    /// `PG_BINDIR` is set but lacks one of the programs a cluster needs.
    BadBindir { dir: PathBuf, missing: &'static str },
    /// We are root, and PostgreSQL refuses root, but there is nobody to run it as.
    NoPostgresUser,
    /// We are root and there is a `postgres` user, but it cannot enter a directory we use.
    Unreachable { dir: PathBuf },
    /// A program could not be started at all.
    Spawn { program: String, source: io::Error },
    /// A program ran and failed; `output` is what it printed (never a password: none is passed
    /// on a command line).
    Failed {
        what: String,
        status: ExitStatus,
        output: String,
    },
    /// A file or directory could not be read, written or created.
    Io { what: String, source: io::Error },
    /// Every port tried was taken.
    NoFreePort { tried: usize },
    /// A value on the command line or in a file is not what it should be.
    Invalid { what: String },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::NoServerBinaries => write!(
                f,
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in PG_BINDIR, \
                 `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH: {INSTALL_HINT}"
            ),
            HarnessError::BadBindir { dir, missing } => write!(
                f,
                "PG_BINDIR={} holds no {missing}: point it at the directory of initdb, pg_ctl \
                 and postgres, or unset it to search the usual places",
                dir.display()
            ),
            HarnessError::NoPostgresUser => write!(
                f,
                "running as root, but PostgreSQL refuses root and there is no `postgres` user to \
                 run it as (with runuser): create one (useradd -r postgres) or run as a normal user"
            ),
            HarnessError::Unreachable { dir } => write!(
                f,
                "the postgres user cannot enter {} (a parent directory is closed to it): use a \
                 directory it can reach, e.g. under /tmp or /var/tmp, or chmod o+x the parents",
                dir.display()
            ),
            HarnessError::Spawn { program, source } => {
                write!(f, "cannot run {program}: {source}")
            }
            HarnessError::Failed {
                what,
                status,
                output,
            } => {
                write!(f, "{what} failed ({status})")?;
                let output = output.trim();
                if !output.is_empty() {
                    write!(f, ": {output}")?;
                }
                Ok(())
            }
            HarnessError::Io { what, source } => write!(f, "{what}: {source}"),
            HarnessError::NoFreePort { tried } => write!(
                f,
                "no free TCP port on 127.0.0.1 after {tried} tries below the kernel's range for \
                 outgoing connections (net.ipv4.ip_local_port_range): stop what holds them"
            ),
            HarnessError::Invalid { what } => f.write_str(what),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Spawn { source, .. } | HarnessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an IO error with what was being done.
pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}
