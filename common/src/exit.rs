//! The exit codes both binaries use, so the same failure ends either one with the same code.
//! `u8`, as `std::process::ExitCode::from` takes them.

/// Ran and stopped as asked (the propagator: and every event it sent was delivered, or with a
/// spool: and none is left in it).
pub const OK: u8 = 0;
/// A failure at run time: a service that could not start or keep running (a signal handler
/// that cannot be installed, a port already taken, a database that cannot be reached at
/// start), a stop forced by a further SIGTERM/SIGINT, or for the propagator an event rejected,
/// given up or abandoned.
pub const FAILURE: u8 = 1;
/// A configuration or usage error: a flag, a config key, `.env`, an input file.
pub const CONFIG: u8 = 2;
/// The propagator with a spool: nothing failed, but events remain in the spool for the next
/// run (the consumer could not settle them before the run ended), so "kept" is told apart from
/// "stored".
pub const SPOOLED: u8 = 3;
