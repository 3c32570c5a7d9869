//! Client connections get the file descriptors that the database side does not need.
//!
//! A client connection holds one descriptor. A database session holds four: its socket, and
//! the driver's runtime's two epoll descriptors and one event descriptor (counted in
//! `/proc/PID/fd` with 1, 2 and 6 workers: 21, 25 and 41 descriptors, 9 of them not sessions).
//! With every descriptor taken by clients, a session that has to be opened again (after a
//! restart of the server, for the readiness probe) cannot start, and the consumer answers 503
//! to everyone until clients leave; new clients meanwhile wait unanswered in the listen
//! backlog. So the consumer holds at most as many client connections as `ulimit -n` leaves
//! after a reserve for the database, and answers the ones past that with the fast 503 of
//! `max_connections`. The startup log says so when the open-file limit is the bound.

use std::fmt;

/// Descriptors of one database session: the socket, the runtime's epoll and event descriptors.
pub const PER_SESSION: u64 = 4;

/// Descriptors that are not sessions: standard input, output and error, the listener, the
/// journal and notify sockets, files read at a SIGHUP, and a connection accepted only to be
/// refused, with room to spare (9 are open once started).
pub const BESIDE_SESSIONS: u64 = 16;

/// How many client connections may be open at once, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBound {
    pub connections: usize,
    /// Set when the open-file limit, not `max_connections`, is the bound.
    pub lowered_by: Option<Lowered>,
}

/// The open-file limit that lowered `max_connections`, and what the database side keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lowered {
    pub max_connections: usize,
    pub open_files: u64,
    pub reserved: u64,
}

impl fmt::Display for Lowered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_connections {} lowered to {}: the open-file limit (ulimit -n, LimitNOFILE) is {} \
             and {} descriptors are kept for the database sessions and the listener",
            self.max_connections,
            self.open_files - self.reserved,
            self.open_files,
            self.reserved
        )
    }
}

/// The open-file limit leaves no descriptor for a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFewDescriptors {
    pub open_files: u64,
    pub reserved: u64,
}

impl fmt::Display for TooFewDescriptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the open-file limit (ulimit -n, LimitNOFILE) is {}, and the database sessions and \
             the listener need {} of it: raise it to at least {}",
            self.open_files,
            self.reserved,
            self.reserved + 1
        )
    }
}

/// The bound on client connections: `max_connections`, or what `open_files` leaves after
/// `sessions` database sessions and [`BESIDE_SESSIONS`]. `None`: no limit.
pub fn connection_bound(
    max_connections: usize,
    open_files: Option<u64>,
    sessions: usize,
) -> Result<ConnectionBound, TooFewDescriptors> {
    let unlowered = ConnectionBound {
        connections: max_connections,
        lowered_by: None,
    };
    let Some(open_files) = open_files else {
        return Ok(unlowered);
    };
    let reserved = PER_SESSION * sessions as u64 + BESIDE_SESSIONS;
    let left = open_files
        .checked_sub(reserved)
        .filter(|&left| left > 0)
        .ok_or(TooFewDescriptors {
            open_files,
            reserved,
        })?;
    if left >= max_connections as u64 {
        return Ok(unlowered);
    }
    Ok(ConnectionBound {
        connections: left as usize,
        lowered_by: Some(Lowered {
            max_connections,
            open_files,
            reserved,
        }),
    })
}

/// This process's soft limit on open files (`ulimit -n`), from `/proc/self/limits` (the crate
/// forbids `unsafe`, so no `getrlimit`); `None` when unlimited or unreadable.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    soft_open_files(&limits)
}

/// The soft limit of the "Max open files" line: `Max open files  1024  524288  files`.
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generous_limit_leaves_max_connections_as_configured() {
        let bound = connection_bound(384, Some(65_536), 5).unwrap();
        assert_eq!((bound.connections, bound.lowered_by), (384, None));
        assert_eq!(connection_bound(384, None, 5).unwrap().connections, 384);
        // Exactly enough: 384 + 5 × 4 + 16.
        assert_eq!(
            connection_bound(384, Some(420), 5).unwrap().lowered_by,
            None
        );
    }

    #[test]
    fn a_low_limit_lowers_max_connections_and_says_by_how_much() {
        let bound = connection_bound(384, Some(64), 5).unwrap();
        assert_eq!(bound.connections, 28);
        let lowered = bound.lowered_by.unwrap();
        assert_eq!(
            lowered.to_string(),
            "max_connections 384 lowered to 28: the open-file limit (ulimit -n, LimitNOFILE) is \
             64 and 36 descriptors are kept for the database sessions and the listener"
        );
        assert_eq!(
            connection_bound(384, Some(419), 5).unwrap().connections,
            383
        );
    }

    #[test]
    fn a_limit_that_leaves_nothing_is_refused_with_what_it_needs() {
        let refused = connection_bound(384, Some(36), 5).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the open-file limit (ulimit -n, LimitNOFILE) is 36, and the database sessions and \
             the listener need 36 of it: raise it to at least 37"
        );
        assert!(connection_bound(384, Some(10), 5).is_err());
        assert_eq!(connection_bound(384, Some(37), 5).unwrap().connections, 1);
    }

    #[test]
    fn the_soft_limit_is_read_and_unlimited_is_none() {
        let limits = "Limit             Soft Limit    Hard Limit    Units\n\
                      Max processes     94651         94651         processes\n\
                      Max open files    1024          524288        files\n";
        assert_eq!(soft_open_files(limits), Some(1024));
        let unlimited = "Max open files    unlimited     unlimited     files\n";
        assert_eq!(soft_open_files(unlimited), None);
        assert_eq!(soft_open_files("Max processes 5 5 processes\n"), None);
        // This process's, as the shell sees it.
        let shell = std::process::Command::new("sh")
            .args(["-c", "ulimit -n"])
            .output()
            .unwrap();
        let shell = String::from_utf8(shell.stdout).unwrap();
        match open_files_limit() {
            Some(limit) => assert_eq!(limit.to_string(), shell.trim()),
            None => assert_eq!(shell.trim(), "unlimited"),
        }
    }
}
