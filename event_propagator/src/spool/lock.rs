//! One propagator per spool: an exclusive `flock` on `DIR/lock`, held for the life of the
//! process. The kernel releases it when the process dies, however it dies, so a crashed
//! propagator never leaves a stale lock behind (a PID file would).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

/// The lock file's name in the spool directory.
pub const LOCK_FILE: &str = "lock";

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    Held,
    Io(io::Error),
}

/// Takes the spool's lock without waiting; the returned file holds it until dropped.
pub fn take(dir: &Path) -> Result<File, LockError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LockError::Held),
        Err(TryLockError::Error(e)) => Err(LockError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("spool-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = take(&dir).unwrap();
        assert!(matches!(take(&dir), Err(LockError::Held)));
        drop(first);
        assert!(take(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
