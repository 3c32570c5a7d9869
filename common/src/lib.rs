//! What both services share: the event with its validation, the configuration, `.env`, the
//! logger and its rate-limited lines, the stop signals and exit codes, the TLS files.
//!
//! This crate does no network or database I/O; it reads the files it is pointed at (config,
//! `.env`, events) and writes log lines to stderr, nothing else.
#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod dotenv;
pub mod event;
pub mod exit;
pub mod file;
pub mod logging;
pub mod signals;
pub mod tls;

pub use config::{Config, ConfigError, Secret};
pub use dotenv::load_dotenv;
pub use event::{
    parse_event, parse_event_list, read_event_list, Event, EventError, EventListError,
};
