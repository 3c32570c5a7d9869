//! What both services share: the event with its validation, a batch of events (`POST /events`
//! and the propagator's events file), the configuration, `.env`, the logger and its
//! rate-limited lines, the stop signals and exit codes, the TLS files, the calendar.
//!
//! This crate does no network or database I/O; it reads the files it is pointed at (config,
//! `.env`, events) and writes log lines to stderr, nothing else.
#![forbid(unsafe_code)]

pub mod batch;
pub mod calendar;
pub mod config;
pub mod dotenv;
pub mod event;
pub mod exit;
pub mod file;
pub mod logging;
pub mod signals;
pub mod stop;
pub mod sync;
pub mod tls;

pub use batch::{read_event_list, BatchError};
pub use config::{Config, ConfigError, Secret};
pub use dotenv::load_dotenv;
pub use event::{parse_event, Event, EventError};
