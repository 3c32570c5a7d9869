//! SIGTERM, SIGINT and SIGHUP for both binaries: stop signals counted, a forced exit with
//! [`exit::FAILURE`] once armed, and SIGHUP as a flag instead of the end
//! of the process.
//!
//! The handlers (signal-hook's) only write a byte to a socket pair per stop signal, set flags,
//! or exit; everything else happens on the thread that calls [`Signals::stops_within`]. What a
//! binary does with the signals is its own: the consumer drains, stops, and reloads its
//! certificate on SIGHUP; the propagator stops sending and logs SIGHUP as ignored.

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::exit;

/// What the signal handlers leave for the thread that watches them.
#[derive(Debug)]
pub struct Signals {
    /// The reading end of a self-pipe the handlers write one byte to per SIGTERM or SIGINT,
    /// so stop signals are counted without losing one that came while the watcher was busy.
    stops: UnixStream,
    /// Set: a SIGTERM or SIGINT exits at once with [`exit::FAILURE`], in the handler (a stop
    /// waiting on a frozen database or a hanging send cannot hold it up).
    force_exit: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

/// A handler that could not be installed (exit code [`exit::FAILURE`]: a failure of the
/// machine, not of the configuration).
#[derive(Debug)]
pub struct SignalError {
    /// The signal whose handler failed; none: the self-pipe could not be made.
    signal: Option<i32>,
    error: io::Error,
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Some(signal) => write!(f, "cannot handle signal {signal}: {}", self.error),
            None => write!(f, "cannot create the signal pipe: {}", self.error),
        }
    }
}

impl std::error::Error for SignalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Signals {
    /// Installs the handlers. Each SIGTERM/SIGINT is counted (see [`Signals::stops_within`]);
    /// once the forced exit is armed (by the first of them when `arm_on_first_stop`, else by
    /// [`Signals::arm_forced_exit`]) the next one exits at once with [`exit::FAILURE`]. SIGHUP
    /// (a closed terminal or SSH session, `systemctl reload`) sets a flag that
    /// [`Signals::take_hangup`] reads, instead of ending the process.
    pub fn register(arm_on_first_stop: bool) -> Result<Signals, SignalError> {
        let (stops, write_end) = UnixStream::pair().map_err(|error| SignalError {
            signal: None,
            error,
        })?;
        let signals = Signals {
            stops,
            force_exit: Arc::new(AtomicBool::new(false)),
            hangup: Arc::new(AtomicBool::new(false)),
        };
        let cannot = |signal: i32| {
            move |error: io::Error| SignalError {
                signal: Some(signal),
                error,
            }
        };
        for signal in [SIGTERM, SIGINT] {
            // The exit must be registered first: it acts only once `force_exit` was already set,
            // so the signal that arms it does not also exit.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(exit::FAILURE),
                Arc::clone(&signals.force_exit),
            )
            .map_err(cannot(signal))?;
            if arm_on_first_stop {
                signal_hook::flag::register(signal, Arc::clone(&signals.force_exit))
                    .map_err(cannot(signal))?;
            }
            let write_end = write_end.try_clone().map_err(cannot(signal))?;
            signal_hook::low_level::pipe::register(signal, write_end).map_err(cannot(signal))?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&signals.hangup)).map_err(cannot(SIGHUP))?;
        Ok(signals)
    }

    /// The stop signals that arrived, waiting up to `timeout` for the first.
    pub fn stops_within(&self, timeout: Duration) -> usize {
        // A zero read timeout is refused by the OS, and means "no wait" here anyway.
        let timeout = timeout.max(Duration::from_millis(1));
        if self.stops.set_read_timeout(Some(timeout)).is_err() {
            std::thread::sleep(timeout);
            return 0;
        }
        let mut bytes = [0u8; 64];
        match (&self.stops).read(&mut bytes) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => 0,
            Err(e) if e.kind() == ErrorKind::Interrupted => 0,
            Err(_) => {
                // Not expected from a socket pair we own; never spin on it.
                std::thread::sleep(timeout);
                0
            }
        }
    }

    /// Whether a SIGHUP came since the last call.
    pub fn take_hangup(&self) -> bool {
        self.hangup.swap(false, Ordering::Relaxed)
    }

    /// Makes the next stop signal exit at once. Returns true when one already came since the
    /// last count: the caller exits with [`exit::FAILURE`] instead.
    pub fn arm_forced_exit(&self) -> bool {
        // Armed first, then the pipe read: a signal either finds the exit armed or left its
        // byte to be read here.
        self.force_exit.store(true, Ordering::SeqCst);
        let came = self
            .stops
            .set_nonblocking(true)
            .is_ok_and(|()| matches!((&self.stops).read(&mut [0u8; 64]), Ok(n) if n > 0));
        // Back to waiting reads, so a later `stops_within` waits rather than spins.
        let _ = self.stops.set_nonblocking(false);
        came
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test in this binary that installs handlers or raises signals: it never raises
    /// a stop signal once the forced exit is armed (that would end the test process).
    #[test]
    fn stop_signals_are_counted_and_a_hangup_is_a_flag_until_the_exit_is_armed() {
        let signals = Signals::register(false).unwrap();
        assert_eq!(signals.stops_within(Duration::ZERO), 0, "no signal yet");
        signal_hook::low_level::raise(SIGTERM).unwrap();
        signal_hook::low_level::raise(SIGINT).unwrap();
        let mut counted = 0;
        for _ in 0..100 {
            counted += signals.stops_within(Duration::from_millis(100));
            if counted == 2 {
                break;
            }
        }
        assert_eq!(counted, 2, "each stop signal counted once");
        assert!(!signals.take_hangup());
        signal_hook::low_level::raise(SIGHUP).unwrap();
        assert!(signals.take_hangup(), "SIGHUP sets the flag");
        assert!(!signals.take_hangup(), "and taking it clears it");
        assert!(
            !signals.arm_forced_exit(),
            "no stop signal came since the count"
        );
        assert_eq!(signals.stops_within(Duration::from_millis(5)), 0);
    }
}
