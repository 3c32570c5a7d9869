//! systemd notification (`sd_notify` protocol): readiness, stopping, watchdog pings.
//!
//! Hand-written over a Unix datagram socket (a few lines, no C library). Without
//! `NOTIFY_SOCKET` every call does nothing. The watchdog is pinged from the database workers'
//! loop, not from a timer thread: if every worker is wedged, the pings stop and systemd
//! restarts the service.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog_interval: Option<Duration>,
    started: Instant,
    /// Milliseconds since `started` of the last watchdog ping.
    last_ping_ms: AtomicU64,
}

impl Notifier {
    /// Does nothing on every call.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog_interval: None,
            started: Instant::now(),
            last_ping_ms: AtomicU64::new(0),
        }
    }

    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, as systemd sets them.
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let watchdog_for_us = std::env::var("WATCHDOG_PID")
            .map(|pid| pid.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0 && watchdog_for_us);
        Notifier::new(socket.as_deref(), usec.map(Duration::from_micros))
    }

    /// `socket` as in `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
    pub fn new(socket: Option<&str>, watchdog: Option<Duration>) -> Notifier {
        let target = socket.and_then(|s| match open(s) {
            Ok(pair) => Some(pair),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={s} cannot be used, no systemd notifications: {e}");
                None
            }
        });
        Notifier {
            watchdog_interval: watchdog.filter(|_| target.is_some()),
            target,
            started: Instant::now(),
            last_ping_ms: AtomicU64::new(0),
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// How often the workers should call [`Notifier::watchdog_tick`] at least, when enabled.
    pub fn watchdog_tick_interval(&self) -> Option<Duration> {
        self.watchdog_interval.map(|w| w / 4)
    }

    /// Sends `WATCHDOG=1` if half the watchdog interval passed since the last ping.
    pub fn watchdog_tick(&self) {
        let Some(interval) = self.watchdog_interval else {
            return;
        };
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_ping_ms.load(Ordering::Relaxed);
        let half = (interval.as_millis() as u64 / 2).max(1);
        if now.saturating_sub(last) >= half
            && self
                .last_ping_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.send("WATCHDOG=1");
        }
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
                log::debug!("systemd notification failed: {e}");
            }
        }
    }
}

fn open(socket: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_ready_and_stopping_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let notifier = Notifier::new(path.to_str(), None);
        notifier.ready("listening");
        notifier.stopping();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("READY=1\n"));
        let n = listener.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("STOPPING=1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn watchdog_pings_are_spaced_by_half_the_interval() {
        let dir = std::env::temp_dir().join(format!("notify-wd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let notifier = Notifier::new(path.to_str(), Some(Duration::from_millis(200)));
        std::thread::sleep(Duration::from_millis(120));
        for _ in 0..50 {
            notifier.watchdog_tick();
        }
        let mut buf = [0u8; 64];
        let mut pings = 0;
        while let Ok(n) = listener.recv(&mut buf) {
            assert_eq!(&buf[..n], b"WATCHDOG=1");
            pings += 1;
        }
        assert_eq!(pings, 1, "50 ticks within one half-interval send one ping");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
