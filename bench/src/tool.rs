//! What the bench tools (`connect_rate`, `write_paths`, `batch_load`) share: running one with
//! its usage and exit statuses, and reading flag values.

use std::process::ExitCode;

use lexopt::ValueExt;

/// Parses, runs, and maps the outcome to the tools' exit statuses: 0, 1 when the run failed
/// (the reason on stderr), 2 for bad usage (the reason and the usage).
pub fn main_of<A>(
    name: &str,
    usage: &str,
    parse: impl FnOnce() -> Result<A, String>,
    run: impl FnOnce(&A) -> Result<(), String>,
) -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{name}: {message}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The next flag's value as text.
pub fn text(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .string()
        .map_err(|e| e.to_string())
}

/// A flag's value as a number above 0.
pub fn positive(flag: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .ok_or(format!("{flag} {value}: not a positive number"))
}

/// A flag's value as a port.
pub fn port(value: &str) -> Result<u16, String> {
    value
        .parse()
        .map_err(|_| format!("--port {value}: not a port"))
}
