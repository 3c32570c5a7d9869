//! `event_consumer`: command line, configuration, signals. The service lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use common::config::{ConfigSource, DEFAULT_CONFIG_FILE};
use common::signals::Signals;
use common::{exit, Config};
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
            return ExitCode::from(exit::OK);
        }
        Err(message) => {
            eprintln!("event_consumer: {message}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    // .env first, before any thread exists (it sets environment variables).
    if let Err(e) = common::load_dotenv(std::path::Path::new(".env")) {
        eprintln!("event_consumer: {e}");
        return ExitCode::from(exit::CONFIG);
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
            return ExitCode::from(exit::CONFIG);
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
            return ExitCode::from(exit::FAILURE);
        }
    };
    let running = match event_consumer::start_with_notifier(&config, Notifier::from_env()) {
        Ok(running) => running,
        Err(e @ event_consumer::StartError::Tls(_)) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::from(exit::CONFIG);
        }
        Err(e) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let reload_on_hangup = || {
        if signals.take_hangup() {
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
            return ExitCode::from(exit::FAILURE);
        }
    }
    running.shutdown();
    ExitCode::from(exit::OK)
}

/// How often the main thread looks at the SIGHUP flag while it waits for a stop signal.
const SIGNAL_POLL: Duration = Duration::from_millis(50);
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
