//! The exit codes both binaries use, so the same failure ends either one with the same code.
//! `u8`, as `std::process::ExitCode::from` takes them.

/// Ran and stopped as asked (the propagator: and every event it sent was delivered).
pub const OK: u8 = 0;
/// A failure at run time: a service that could not start or keep running (a signal handler
/// that cannot be installed, a port already taken, a database that cannot be reached at
/// start), a stop forced by a further SIGTERM/SIGINT, or for the propagator an event rejected,
/// given up or abandoned.
pub const FAILURE: u8 = 1;
/// A configuration or usage error: a flag, a config key, `.env`, an input file.
pub const CONFIG: u8 = 2;
