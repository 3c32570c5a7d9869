//! `event_consumer`: command line, configuration, signals. The service lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Config, EXIT_CONFIG};
use event_consumer::notify::Notifier;

const USAGE: &str = "\
event_consumer: receives events on POST /event and stores them in PostgreSQL

Usage: event_consumer [--config PATH] [--port N]

Options:
  --config PATH   configuration file (default: config.yaml)
  --port N        listen port, overrides consumer.port
  -h, --help      print this help
  -V, --version   print the version

A .env file in the working directory is loaded first; variables already set win.
LOG_LEVEL sets the log level (error, warn, info, debug, trace).
SIGTERM or SIGINT stops it gracefully (at most shutdown_timeout_seconds plus a few seconds);
a second one during that stop exits at once with status 1. SIGHUP is logged and ignored.
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure or stopped by a second signal,
2 configuration or usage error.";

struct Options {
    config: PathBuf,
    port: Option<u16>,
}

enum Parsed {
    Run(Options),
    Exit(&'static str),
}

fn parse_args() -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut options = Options {
        config: PathBuf::from("config.yaml"),
        port: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") => options.config = parser.value().map_err(|e| e.to_string())?.into(),
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
    let mut config = match Config::load(&options.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("event_consumer: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if let Some(port) = options.port {
        config.consumer.port = port;
    }

    let signals = match Signals::register() {
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
    loop {
        if signals.hangup.swap(false, Ordering::Relaxed) {
            running.reload();
        }
        if signals.stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    running.shutdown();
    ExitCode::SUCCESS
}

/// The flags the signal handlers set.
struct Signals {
    /// SIGTERM or SIGINT: stop gracefully.
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

impl Signals {
    /// A first SIGTERM/SIGINT sets `stop`; a second one, while the graceful stop runs (and may
    /// wait on a frozen database), exits at once with status 1. SIGHUP (a closed terminal or
    /// SSH session, `systemctl reload`) sets `hangup` instead of ending the process.
    fn register() -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            hangup: Arc::new(AtomicBool::new(false)),
        };
        let cannot = |signal: i32, e: std::io::Error| format!("cannot handle signal {signal}: {e}");
        for signal in [SIGTERM, SIGINT] {
            // The exit must be registered first: it acts only once `stop` was already set.
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&signals.stop))
                .map_err(|e| cannot(signal, e))?;
            signal_hook::flag::register(signal, Arc::clone(&signals.stop))
                .map_err(|e| cannot(signal, e))?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&signals.hangup))
            .map_err(|e| cannot(SIGHUP, e))?;
        Ok(signals)
    }
}
