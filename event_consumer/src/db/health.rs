//! The database as the consumer sees it: working, or in an outage that started with a cause.
//!
//! An outage is any failure of the write path: the server cannot be reached, refuses the login,
//! is read-only (a standby, `default_transaction_read_only`), has a full disk, runs past
//! `statement_timeout`, misses the table, or gives no answer at all within `statement_timeout`
//! and a margin (a stopped server, hung storage: see `deadlines.rs`). While it lasts:
//! - the consumer answers 503 at once, and only one attempt to use the database (a reconnect, a
//!   write, a readiness probe) is made per backoff interval, 0.1 s doubling to 5 s, however many
//!   requests arrive and whichever thread makes them: no new session and no failed login per
//!   request;
//! - the log says when it started (with its cause: SQLSTATE, message, host and port; with several
//!   hosts, each host's), when the cause changes, once a minute while it lasts, and when it ends, each with the number of
//!   requests answered 503 meanwhile. Nothing per request.
//!
//! It ends when a write succeeds (a request's, or the rolled-back probe write of `/readyz` and
//! of the worker threads), not when a connection opens: a read-only server accepts connections.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::logging::RateLimited;
use common::sync::lock;

use super::connect::HostCause;
use super::store::StoreError;
use super::tls::CertificateRejected;

/// First pause between attempts during an outage; doubles up to [`ATTEMPT_DELAY_MAX`].
pub const ATTEMPT_DELAY_MIN: Duration = Duration::from_millis(100);
pub const ATTEMPT_DELAY_MAX: Duration = Duration::from_secs(5);
/// How often a lasting outage is logged again.
pub const REMINDER_EVERY: Duration = Duration::from_secs(60);

/// What went wrong, as logged: the SQLSTATE when the server sent one, and the full message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cause {
    /// The SQLSTATE, or for failures without one (refused, reset, timed out) the message:
    /// a change of key is a change of cause.
    key: String,
    text: String,
}

impl Cause {
    fn of(error: &StoreError) -> Cause {
        let text = error.detail();
        let hosts = error.host_failures();
        let key = match error.sqlstate() {
            Some(code) => code.to_owned(),
            // Several hosts: one kind per host, so a change at any of them is a new cause.
            None if hosts.len() > 1 => hosts
                .iter()
                .map(|host| match host.sqlstate() {
                    Some(code) => code.to_owned(),
                    None => host_kind(&host.cause).to_owned(),
                })
                .collect::<Vec<_>>()
                .join(","),
            None => error_kind(error).to_owned(),
        };
        Cause { key, text }
    }
}

/// The kind of a failure the server sent no SQLSTATE for, told by our error variants and the
/// I/O error kinds underneath. "Connection closed" and "reset by peer" are one cause (the
/// connection was lost), or a restart would log a line for each.
fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable(e) | StoreError::Failed(e) => postgres_kind(e),
        StoreError::Tls(_) => "tls",
        StoreError::NoAnswer(_) => "timed out",
        StoreError::Inconsistent(_) => "unexpected answer",
        StoreError::Connect { failures, .. } => failures
            .first()
            .map_or("connection lost", |host| host_kind(&host.cause)),
    }
}

fn host_kind(cause: &HostCause) -> &'static str {
    match cause {
        HostCause::Postgres(e) => postgres_kind(e),
        HostCause::ReadOnly => "read-only",
        HostCause::TimedOut(_) | HostCause::StillHanging => "timed out",
        HostCause::Local(_) => "connection lost",
    }
}

/// Walks the driver error's sources: a TLS library error (a handshake that failed), else the
/// first I/O error's kind.
fn postgres_kind(error: &postgres::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if is_tls(e) {
            return "tls";
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|inner| is_tls(inner)) {
                return "tls";
            }
            return io_kind(io.kind());
        }
        source = e.source();
    }
    "connection lost"
}

fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    error.is::<rustls::Error>() || error.is::<CertificateRejected>()
}

fn io_kind(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out",
        _ => "connection lost",
    }
}

#[derive(Debug)]
struct Outage {
    started: Instant,
    cause: Cause,
    /// Requests answered 503 because of it.
    refused: u64,
    /// The lasting outage's reminder line: at most one per [`REMINDER_EVERY`] after the last
    /// line about this outage.
    reminder: RateLimited,
    next_attempt: Instant,
    delay: Duration,
    /// When a write last succeeded: the outage is over unless a failure follows within
    /// [`SETTLE`] (then it goes on, without a new start line).
    ended: Option<Instant>,
}

/// How long an outage must stay over before its end is logged. A server that takes some
/// writes and refuses others (a disk with room for a small row but not for a large one) would
/// otherwise log a start and an end line per flap.
pub const SETTLE: Duration = Duration::from_secs(5);

/// A reminder line due [`REMINDER_EVERY`] after `now`, when an outage line was just written.
fn reminder_from(now: Instant) -> RateLimited {
    let mut reminder = RateLimited::new(log::Level::Warn, REMINDER_EVERY, "reminders");
    reminder.logged_at(now);
    reminder
}

/// See the module docs. Shared by every database connection.
#[derive(Debug)]
pub struct Health {
    /// `host:port`, for the log lines.
    target: String,
    outage: Mutex<Option<Outage>>,
    /// An outage is going on (and not ended): read on every batch without the lock.
    down: AtomicBool,
    /// An outage is going on or its end is not logged yet.
    pending: AtomicBool,
}

impl Health {
    pub fn new(target: String) -> Health {
        Health {
            target,
            outage: Mutex::new(None),
            down: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        }
    }

    /// The hosts and ports, as the log lines name them.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether an outage is going on.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Whether the database may be used now. Always outside an outage; during one, true once
    /// per backoff interval (the caller then makes the attempt and reports its result).
    pub fn may_attempt(&self, now: Instant) -> bool {
        if !self.is_down() {
            return true;
        }
        let mut outage = lock(&self.outage);
        match outage.as_mut() {
            Some(o) if o.ended.is_none() => {
                if now < o.next_attempt {
                    return false;
                }
                o.next_attempt = now + o.delay;
                o.delay = (o.delay * 2).min(ATTEMPT_DELAY_MAX);
                true
            }
            _ => true,
        }
    }

    /// Whether an outage is going on and its next attempt is due (without taking it).
    pub fn attempt_due(&self, now: Instant) -> bool {
        self.is_down()
            && lock(&self.outage)
                .as_ref()
                .is_some_and(|o| o.ended.is_none() && now >= o.next_attempt)
    }

    /// A use of the database failed: starts an outage, notes a change of its cause, or takes
    /// up an outage that ended less than [`SETTLE`] ago.
    pub fn failed(&self, error: &StoreError) {
        let cause = Cause::of(error);
        let now = Instant::now();
        let mut outage = lock(&self.outage);
        match outage.as_mut() {
            None => {
                log::error!(
                    "database {} unavailable: {}; answering 503 until it is back",
                    self.target,
                    cause.text
                );
                *outage = Some(Outage {
                    started: now,
                    cause,
                    refused: 0,
                    reminder: reminder_from(now),
                    // The first retry may follow at once (a restarted server takes a new
                    // connection); the backoff starts after it.
                    next_attempt: now,
                    delay: ATTEMPT_DELAY_MIN,
                    ended: None,
                });
                self.pending.store(true, Ordering::Relaxed);
            }
            Some(o) => {
                if o.ended.take().is_some() {
                    // Taken up again: no attempt at once, the backoff goes on where it was.
                    o.next_attempt = now + o.delay;
                }
                if o.cause.key != cause.key {
                    log::warn!(
                        "database {} still unavailable after {:.1} s, now: {} ({} requests answered 503 so far)",
                        self.target,
                        o.started.elapsed().as_secs_f64(),
                        cause.text,
                        o.refused
                    );
                    o.cause = cause;
                    o.reminder.logged_at(now);
                }
            }
        }
        self.down.store(true, Ordering::Relaxed);
    }

    /// `n` requests were answered 503 because of the outage.
    pub fn refused(&self, n: usize) {
        if let Some(o) = lock(&self.outage).as_mut() {
            o.refused += n as u64;
        }
    }

    /// A write succeeded: the outage, if any, is over (its end is logged once it stays over
    /// for [`SETTLE`], by [`Health::remind`], or at once by [`Health::flush`]).
    pub fn succeeded(&self) {
        if !self.is_down() {
            return;
        }
        let mut outage = lock(&self.outage);
        if let Some(o) = outage.as_mut() {
            o.ended.get_or_insert_with(Instant::now);
        }
        self.down.store(false, Ordering::Relaxed);
    }

    /// Called by the worker threads between batches: logs the end of an outage that stayed
    /// over for [`SETTLE`], or a lasting outage again once [`REMINDER_EVERY`] passed since its
    /// last line. True when it logged.
    pub fn remind(&self, now: Instant) -> bool {
        if !self.pending.load(Ordering::Relaxed) {
            return false;
        }
        let mut outage = lock(&self.outage);
        let Some(o) = outage.as_mut() else {
            return false;
        };
        match o.ended {
            Some(ended) if now.duration_since(ended) >= SETTLE => {
                self.log_end(o, ended);
                *outage = None;
                self.pending.store(false, Ordering::Relaxed);
                true
            }
            Some(_) => false,
            // Asked on every worker tick: what `allow` holds back is not a line left out.
            None => {
                if o.reminder.allow(now).is_none() {
                    return false;
                }
                log::warn!(
                    "database {} still unavailable after {:.0} s: {} ({} requests answered 503 so far)",
                    self.target,
                    o.started.elapsed().as_secs_f64(),
                    o.cause.text,
                    o.refused
                );
                true
            }
        }
    }

    /// Logs the end of an outage that is over but not logged yet (at shutdown).
    pub fn flush(&self) {
        let mut outage = lock(&self.outage);
        if let Some(ended) = outage.as_ref().and_then(|o| o.ended) {
            if let Some(o) = outage.take() {
                self.log_end(&o, ended);
            }
            self.pending.store(false, Ordering::Relaxed);
        }
    }

    fn log_end(&self, o: &Outage, ended: Instant) {
        log::info!(
            "database {} available again after {:.1} s; {} requests were answered 503 meanwhile",
            self.target,
            ended.duration_since(o.started).as_secs_f64(),
            o.refused
        );
    }

    /// Requests answered 503 in the current outage, or the last one if its end is not logged
    /// yet (0 otherwise).
    pub fn refused_so_far(&self) -> u64 {
        lock(&self.outage).as_ref().map_or(0, |o| o.refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> StoreError {
        StoreError::Inconsistent("stand-in for a failure".into())
    }

    #[test]
    fn failures_without_sqlstate_are_told_apart_by_their_io_error_kind() {
        let kinds = [
            (io::ErrorKind::ConnectionReset, "connection lost"),
            (io::ErrorKind::UnexpectedEof, "connection lost"),
            (io::ErrorKind::ConnectionRefused, "refused"),
            (io::ErrorKind::TimedOut, "timed out"),
        ];
        for (kind, name) in kinds {
            assert_eq!(io_kind(kind), name, "{kind:?}");
        }
        let rejected = io::Error::new(
            io::ErrorKind::InvalidData,
            CertificateRejected("the certificate failed verification".into()),
        );
        assert!(
            rejected.get_ref().is_some_and(|inner| is_tls(inner)),
            "a rejected certificate is tls"
        );
        assert_eq!(host_kind(&HostCause::StillHanging), "timed out");
        assert_eq!(
            host_kind(&HostCause::TimedOut(Duration::from_secs(3))),
            "timed out"
        );
        assert_eq!(error_kind(&lost()), "unexpected answer");
    }

    #[test]
    fn outside_an_outage_every_attempt_is_allowed() {
        let health = Health::new("db:5432".into());
        let now = Instant::now();
        assert!((0..100).all(|_| health.may_attempt(now)));
        assert!(!health.attempt_due(now));
    }

    #[test]
    fn during_an_outage_attempts_follow_the_backoff_whoever_asks() {
        let health = Health::new("db:5432".into());
        health.failed(&lost());
        let t0 = Instant::now();
        assert!(health.may_attempt(t0), "the first retry may follow at once");
        assert!(
            !(0..1000).any(|_| health.may_attempt(t0)),
            "a thousand requests in the same instant make no second attempt"
        );
        assert!(!health.may_attempt(t0 + Duration::from_millis(99)));
        assert!(health.attempt_due(t0 + ATTEMPT_DELAY_MIN));
        assert!(health.may_attempt(t0 + ATTEMPT_DELAY_MIN));
        // Doubled: the next one is 200 ms after that.
        let t1 = t0 + ATTEMPT_DELAY_MIN;
        assert!(!health.may_attempt(t1 + Duration::from_millis(199)));
        assert!(health.may_attempt(t1 + Duration::from_millis(200)));
        // Capped at the maximum.
        let mut t = t1 + Duration::from_millis(200);
        for _ in 0..20 {
            t += ATTEMPT_DELAY_MAX;
            assert!(health.may_attempt(t));
        }
        assert!(!health.may_attempt(t + ATTEMPT_DELAY_MAX - Duration::from_millis(1)));
    }

    #[test]
    fn a_lasting_outage_is_logged_again_once_a_minute() {
        let health = Health::new("db:5432".into());
        let t0 = Instant::now();
        assert!(
            !health.remind(t0 + REMINDER_EVERY),
            "no outage, nothing to remind"
        );
        health.failed(&lost());
        let t0 = Instant::now();
        assert!(!health.remind(t0 + REMINDER_EVERY / 2));
        assert!(health.remind(t0 + REMINDER_EVERY));
        assert!(!health.remind(t0 + REMINDER_EVERY + REMINDER_EVERY / 2));
        assert!(health.remind(t0 + REMINDER_EVERY * 2));
    }

    #[test]
    fn a_success_ends_the_outage_and_counts_restart() {
        let health = Health::new("db:5432".into());
        health.failed(&lost());
        health.refused(3);
        health.failed(&lost());
        health.refused(2);
        assert!(health.is_down());
        assert_eq!(health.refused_so_far(), 5);
        health.succeeded();
        assert!(!health.is_down());
        assert!(health.may_attempt(Instant::now()), "over: no backoff");
        assert!(
            !health.remind(Instant::now()),
            "the end is logged once it settled"
        );
        assert!(health.remind(Instant::now() + SETTLE));
        assert_eq!(health.refused_so_far(), 0);
        health.refused(7);
        assert_eq!(health.refused_so_far(), 0, "no outage, nothing to count");
    }

    #[test]
    fn a_failure_soon_after_the_end_takes_the_outage_up_again_where_its_backoff_was() {
        let health = Health::new("db:5432".into());
        health.failed(&lost());
        let t0 = Instant::now();
        assert!(health.may_attempt(t0));
        assert!(health.may_attempt(t0 + ATTEMPT_DELAY_MIN));
        health.refused(4);
        health.succeeded();
        health.failed(&lost());
        assert!(health.is_down());
        assert!(
            !health.may_attempt(Instant::now()),
            "no attempt at once: the flap does not reset the backoff"
        );
        assert_eq!(health.refused_so_far(), 4, "the same outage goes on");
        health.succeeded();
        health.flush();
        assert_eq!(health.refused_so_far(), 0, "flush logged the end");
    }
}
