//! Integration tests of the propagator: against a recording HTTP receiver written here (keep-alive,
//! retries, rejections, refused connections, shutdown, several sends in flight), the built binary
//! (exit codes, messages, signals, sender threads), and the real consumer with a throwaway
//! PostgreSQL database (end to end).

mod binary;
mod delivery;
mod end_to_end;
mod helpers;
mod window;
