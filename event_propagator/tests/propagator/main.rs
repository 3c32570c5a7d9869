//! Integration tests of the propagator: against a recording HTTP receiver written here (keep-alive,
//! retries, rejections, refused connections, shutdown, several sends in flight), the built binary
//! (exit codes, messages, signals, sender threads), and the real consumer with a throwaway
//! PostgreSQL database (end to end). Nothing here depends on how fast the machine is: pacing,
//! wall-clock bounds and soak sizes are in the `soak` binary (`tests/soak/`), outside
//! `cargo test`. Waits are on a condition with a timeout, so a broken wake-up fails a test
//! with a message instead of hanging it.

mod batch;
mod binary;
mod delivery;
mod end_to_end;
mod endpoints;
mod helpers;
mod keys_log;
mod odd_servers;
mod spool;
mod tls;
mod tmpfs;
mod window;
