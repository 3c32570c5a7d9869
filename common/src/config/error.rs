//! [`ConfigError`]: why a configuration cannot be used, one variant per kind of problem, each
//! message one line naming the file (and the line or key where there is one).

use std::fmt;
use std::path::PathBuf;

/// Why the configuration cannot be used. Every message names the file and what to fix.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    MissingVariable {
        path: PathBuf,
        line: usize,
        key: String,
        variable: String,
    },
    BadSubstitution {
        path: PathBuf,
        line: usize,
        text: String,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    /// A key that is an internal constant now (see [`REMOVED_KEYS`](super::REMOVED_KEYS)).
    RemovedKey {
        path: PathBuf,
        line: usize,
        key: &'static str,
        now: &'static str,
    },
    /// A TLS file the configuration names cannot be used.
    Tls {
        path: PathBuf,
        error: crate::tls::TlsError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::MissingVariable { path, line, key, variable } => write!(
                f,
                "{}:{line}: {key}: environment variable {variable} is not set and has no default \
                 (set it, add it to .env, or write ${{{variable}:-default}})",
                path.display()
            ),
            ConfigError::BadSubstitution { path, line, text } => write!(
                f,
                "{}:{line}: malformed variable reference `{text}` (write ${{NAME}} or ${{NAME:-default}})",
                path.display()
            ),
            ConfigError::Parse { path, message } => write!(f, "{}: {message}", path.display()),
            ConfigError::Invalid { path, key, problem } => {
                write!(f, "{}: {key}: {problem}", path.display())
            }
            ConfigError::RemovedKey {
                path,
                line,
                key,
                now,
            } => write!(
                f,
                "{}:{line}: {key} is no longer a setting (an internal constant in {now}); \
                 remove it",
                path.display()
            ),
            ConfigError::Tls { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}
