//! `event_propagator`: parse the command line, load `.env` and the config, run, exit with the
//! summary's code. Fatal errors are printed here, once, as one line.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use common::config::{ConfigSource, DEFAULT_CONFIG_FILE};
use common::exit;
use common::signals::Signals;
use event_propagator::cli::{self, Command};
use event_propagator::Stop;

fn main() -> ExitCode {
    ExitCode::from(real_main())
}

fn real_main() -> u8 {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return exit::OK;
        }
        Ok(Command::Version) => {
            println!("event_propagator {}", env!("CARGO_PKG_VERSION"));
            return exit::OK;
        }
        Err(e) => return fail(&e, exit::CONFIG),
    };
    // `.env` in the working directory only; real environment variables win over it. Loading
    // sets variables, so it happens before any thread starts.
    if let Err(e) = common::load_dotenv(Path::new(".env")) {
        return fail(&e, exit::CONFIG);
    }
    common::logging::init();
    let config = match common::Config::load_chosen(args.config.as_deref()) {
        Ok((config, ConfigSource::File(_))) => config,
        Ok((config, ConfigSource::Defaults)) => {
            log::info!(
                "no --config and no {DEFAULT_CONFIG_FILE} in the working directory: running on the built-in defaults and flags"
            );
            config
        }
        Err(e) => return fail(&e, exit::CONFIG),
    };
    let settings = args.settings(&config.propagator);
    if settings.auth_token.is_some() && log::max_level() > log::LevelFilter::Debug {
        // ureq's trace output hex-dumps every byte it sends, the Authorization header included;
        // its debug output redacts headers, so debug is as far as it may go.
        log::set_max_level(log::LevelFilter::Debug);
        log::warn!("LOG_LEVEL=trace lowered to debug: trace output would contain the auth token");
    }
    // The first stop signal arms the forced exit: a second one exits at once.
    let signals = match Signals::register(true) {
        Ok(signals) => signals,
        Err(e) => return fail(&e, exit::FAILURE),
    };
    let stop = Stop::new();
    if let Err(e) = event_propagator::stop::on_signals(&stop, signals) {
        return fail(
            &format!("cannot start the signal thread: {e}"),
            exit::FAILURE,
        );
    }
    match event_propagator::run(settings, &stop) {
        Ok(summary) => summary.exit_code(),
        Err(e) => fail(&e, exit::CONFIG),
    }
}

/// Prints a fatal error, once, and gives the exit code for it.
fn fail(error: &dyn std::fmt::Display, code: u8) -> u8 {
    eprintln!("event_propagator: {error}");
    code
}
