//! Where the PostgreSQL server binaries are. The one search every script and test uses, so a
//! machine where tests find PostgreSQL is a machine where `make`, chaos and bench find it too.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::HarnessError;

/// The programs a cluster needs; pgbench and psql are client tools, checked by who uses them.
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `PG_BINDIR` when set (and then it
/// must hold them), else `pg_config --bindir`, the newest `/usr/lib/postgresql/<version>/bin`
/// (Debian keeps the server off PATH), or the directory of an `initdb` on PATH.
pub fn find_bindir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return match missing_program(&dir) {
            None => Ok(dir),
            Some(missing) => Err(HarnessError::BadBindir { dir, missing }),
        };
    }
    pg_config_bindir()
        .or_else(newest_debian_bindir)
        .or_else(initdb_on_path)
        .ok_or(HarnessError::NoServerBinaries)
}

fn missing_program(dir: &Path) -> Option<&'static str> {
    SERVER_PROGRAMS
        .into_iter()
        .find(|program| !dir.join(program).is_file())
}

fn has_server(dir: &Path) -> bool {
    missing_program(dir).is_none()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && has_server(&dir)).then_some(dir)
}

fn newest_debian_bindir() -> Option<PathBuf> {
    let version = |dir: &Path| -> u32 {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| has_server(dir))
        .max_by_key(|dir| version(dir))
}

fn initdb_on_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .find(|dir| dir.join("initdb").is_file() && has_server(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_postgres_names_the_missing_program() {
        let dir = std::env::temp_dir();
        assert_eq!(missing_program(&dir), Some("initdb"));
    }
}
