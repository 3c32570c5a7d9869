//! Who runs the server binaries. PostgreSQL refuses to run as root, so as root they run as the
//! `postgres` user (through runuser), and the directories they write are given to it first.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{io_error, HarnessError};

/// The account the server binaries run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerUser {
    /// Not root: the binaries run as whoever runs us.
    Me,
    /// Root: the binaries run as `postgres`, through `runuser -u postgres --`.
    Postgres,
}

impl ServerUser {
    /// `Postgres` when we are root (and then checks that the user and runuser exist), else `Me`.
    pub fn detect() -> Result<ServerUser, HarnessError> {
        if !running_as_root() {
            return Ok(ServerUser::Me);
        }
        if !succeeds(Command::new("id").arg("postgres")) {
            return Err(HarnessError::NoPostgresUser);
        }
        if !succeeds(Command::new("runuser").arg("--version")) {
            return Err(HarnessError::Invalid {
                what: "running as root needs runuser (util-linux) to start PostgreSQL as the \
                       postgres user: install util-linux, or run as a normal user"
                    .into(),
            });
        }
        Ok(ServerUser::Postgres)
    }

    /// The command line that runs `program` as this user: the program itself, or runuser first.
    pub fn argv(self, program: &Path) -> Vec<OsString> {
        match self {
            ServerUser::Me => vec![program.into()],
            ServerUser::Postgres => ["runuser", "-u", "postgres", "--"]
                .into_iter()
                .map(OsString::from)
                .chain([program.into()])
                .collect(),
        }
    }

    /// A command for `program`, run as this user. As `postgres` it starts in `/`, which that
    /// user can always enter (our working directory may be closed to it, e.g. under /root).
    pub fn command(self, program: &Path) -> Command {
        let argv = self.argv(program);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        if self == ServerUser::Postgres {
            cmd.current_dir("/");
        }
        cmd
    }

    /// Makes `dir` (or a file) this user's, so the server can write or read it (a no-op when
    /// that is us).
    pub fn take_ownership(self, dir: &Path) -> Result<(), HarnessError> {
        if self == ServerUser::Me {
            return Ok(());
        }
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(dir);
        crate::process::run(&mut chown, "chown postgres:postgres")?;
        Ok(())
    }

    /// Fails with how to fix it when this user cannot enter `dir`: every parent must be open
    /// to it, which a checkout under /root, say, is not.
    pub fn check_can_enter(self, dir: &Path) -> Result<(), HarnessError> {
        if self == ServerUser::Me {
            return Ok(());
        }
        let status = self
            .command(Path::new("test"))
            .arg("-x")
            .arg(dir)
            .status()
            .map_err(io_error(
                "cannot run runuser (util-linux) to start PostgreSQL as postgres",
            ))?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::Unreachable {
                dir: dir.to_owned(),
            })
        }
    }
}

/// Whether `cmd` runs and exits 0, its output thrown away.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether we run as root, by the owner of our own /proc entry (the effective uid), which
/// needs neither unsafe code for geteuid nor a process for `id -u`.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_postgres_the_program_runs_through_runuser() {
        let argv = ServerUser::Postgres.argv(Path::new("/usr/bin/initdb"));
        assert_eq!(argv, ["runuser", "-u", "postgres", "--", "/usr/bin/initdb"]);
        assert_eq!(ServerUser::Me.argv(Path::new("initdb")), ["initdb"]);
    }
}
