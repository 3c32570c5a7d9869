//! `event_consumer`: command line, configuration, signals. The service lives in the library.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::config::{ConfigSource, DEFAULT_CONFIG_FILE};
use common::{Config, EXIT_CONFIG};
use event_consumer::notify::Notifier;

const USAGE: &str = "\
event_consumer: receives events over HTTP and stores them in PostgreSQL

Usage: event_consumer [--config PATH] [--port N]

Options:
  --config PATH   configuration file (default: config.yaml in the working directory
                  if it exists, else the built-in defaults)
  --port N        listen port, overrides consumer.port
  -h, --help      print this help
  -V, --version   print the version

Routes: POST /event stores one event, POST /events a batch (all of it or none); GET /healthz
answers while the process runs, GET /readyz while the database takes writes; GET /metrics
gives Prometheus counters, GET /openapi.yaml this API as OpenAPI 3.1.

A .env file in the working directory is loaded first; variables already set win.
LOG_LEVEL sets the log level (error, warn, info, debug, trace).
SIGTERM or SIGINT stops it gracefully (at most shutdown_timeout_seconds plus a few seconds);
a second one during that stop exits at once with status 1. With consumer.drain_seconds the
stop starts with a drain of that length (/readyz answers 503, everything else is served); a
second signal during the drain cuts it short, a third exits at once with status 1.
SIGHUP reads the HTTPS certificate, key and client CA files again (new connections use them;
on failure the old ones stay); without HTTPS it is logged and ignored.
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure or stopped by a second signal,
2 configuration or usage error.";

struct Options {
    /// `--config`; none: config.yaml when it exists, else the defaults.
    config: Option<PathBuf>,
    port: Option<u16>,
}

enum Parsed {
    Run(Options),
    Exit(&'static str),
}

fn parse_args() -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut options = Options {
        config: None,
        port: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") => {
                options.config = Some(parser.value().map_err(|e| e.to_string())?.into())
            }
            Long("port") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let value = value.to_string_lossy();
                let port = value
                    .parse::<u16>()
                    .map_err(|_| format!("--port: `{value}` is not a port number (0-65535)"))?;
                options.port = Some(port);
            }
            Short('h') | Long("help") => return Ok(Parsed::Exit(USAGE)),
            Short('V') | Long("version") => {
                return Ok(Parsed::Exit(concat!(
                    "event_consumer ",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            _ => return Err(format!("{} (see --help)", arg.unexpected())),
        }
    }
    Ok(Parsed::Run(options))
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Exit(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("event_consumer: {message}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    // .env first, before any thread exists (it sets environment variables).
    if let Err(e) = common::load_dotenv(std::path::Path::new(".env")) {
        eprintln!("event_consumer: {e}");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    common::logging::init();
    let mut config = match Config::load_chosen(options.config.as_deref()) {
        Ok((config, ConfigSource::File(_))) => config,
        Ok((config, ConfigSource::Defaults)) => {
            log::info!(
                "no --config and no {DEFAULT_CONFIG_FILE} in the working directory: running on the built-in defaults and flags"
            );
            config
        }
        Err(e) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if let Some(port) = options.port {
        config.consumer.port = port;
    }

    let drain = Duration::from_secs_f64(config.consumer.drain_seconds);
    // Without a drain the first stop signal starts the graceful stop, so it arms the forced
    // exit itself, in the handler, as before drains existed.
    let signals = match Signals::register(drain.is_zero()) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match event_consumer::start_with_notifier(&config, Notifier::from_env()) {
        Ok(running) => running,
        Err(e @ event_consumer::StartError::Tls(_)) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        Err(e) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reload_on_hangup = || {
        if signals.hangup.swap(false, Ordering::Relaxed) {
            running.reload();
        }
    };
    let stops = loop {
        reload_on_hangup();
        let stops = signals.stops_within(SIGNAL_POLL);
        if stops > 0 {
            break stops;
        }
    };
    if !drain.is_zero() {
        // A second stop signal during the drain cuts it short and starts the graceful stop,
        // rather than exiting: the drain only spares load balancers a closed port, while the
        // graceful stop is what keeps acknowledged requests whole, and it is bounded by
        // shutdown_timeout_seconds. A third signal (during that stop) exits at once.
        if stops == 1 {
            running.drain(drain, |left| {
                reload_on_hangup();
                signals.stops_within(left.min(SIGNAL_POLL)) > 0
            });
        } else {
            log::info!("{stops} stop signals at once: stopping without the drain");
        }
        if signals.arm_forced_exit() {
            return ExitCode::FAILURE;
        }
    }
    running.shutdown();
    ExitCode::SUCCESS
}

/// How often the main thread looks at the SIGHUP flag while it waits for a stop signal.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// What the signal handlers leave for the main thread.
struct Signals {
    /// The reading end of a self-pipe the handlers write one byte to per SIGTERM or SIGINT,
    /// so the main thread counts stop signals without losing one that came while it was busy.
    stops: UnixStream,
    /// Set: a SIGTERM or SIGINT exits at once with status 1, in the handler (a stop waiting on
    /// a frozen database cannot hold it up).
    force_exit: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

impl Signals {
    /// Each SIGTERM/SIGINT is counted in `stops`; once `force_exit` is set (by the first of
    /// them when `arm_on_first_stop`, else by [`Signals::arm_forced_exit`]) the next one exits
    /// at once with status 1. SIGHUP (a closed terminal or SSH session, `systemctl reload`)
    /// sets `hangup` instead of ending the process.
    fn register(arm_on_first_stop: bool) -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let (stops, write_end) =
            UnixStream::pair().map_err(|e| format!("cannot create the signal pipe: {e}"))?;
        let signals = Signals {
            stops,
            force_exit: Arc::new(AtomicBool::new(false)),
            hangup: Arc::new(AtomicBool::new(false)),
        };
        let cannot = |signal: i32, e: std::io::Error| format!("cannot handle signal {signal}: {e}");
        for signal in [SIGTERM, SIGINT] {
            // The exit must be registered first: it acts only once `force_exit` was already set.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                1,
                Arc::clone(&signals.force_exit),
            )
            .map_err(|e| cannot(signal, e))?;
            if arm_on_first_stop {
                signal_hook::flag::register(signal, Arc::clone(&signals.force_exit))
                    .map_err(|e| cannot(signal, e))?;
            }
            let write_end = write_end.try_clone().map_err(|e| cannot(signal, e))?;
            signal_hook::low_level::pipe::register(signal, write_end)
                .map_err(|e| cannot(signal, e))?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&signals.hangup))
            .map_err(|e| cannot(SIGHUP, e))?;
        Ok(signals)
    }

    /// The stop signals that arrived, waiting up to `timeout` for the first.
    fn stops_within(&self, timeout: Duration) -> usize {
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

    /// Makes the next stop signal exit at once (the graceful stop begins). Returns true when
    /// one already came since the last count: the caller exits with status 1 instead.
    fn arm_forced_exit(&self) -> bool {
        // Armed first, then the pipe read: a signal either finds the exit armed or left its
        // byte to be read here.
        self.force_exit.store(true, Ordering::SeqCst);
        self.stops
            .set_nonblocking(true)
            .is_ok_and(|()| matches!((&self.stops).read(&mut [0u8; 64]), Ok(n) if n > 0))
    }
}

#[cfg(test)]
mod tests {
    use event_consumer::http::Route;

    use super::USAGE;

    #[test]
    fn the_help_names_every_route_with_its_method() {
        for route in Route::ALL {
            let Some(path) = route.path() else { continue };
            let method = route.allow().split(", ").next().unwrap_or_default();
            let named = format!("{method} {path}");
            // Whole words only: `POST /event` inside `POST /events` does not count.
            let whole = USAGE
                .match_indices(&named)
                .any(|(i, _)| !USAGE[i + named.len()..].starts_with(|c: char| c.is_alphanumeric()));
            assert!(whole, "--help does not name {named}");
        }
    }
}
