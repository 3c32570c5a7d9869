//! What one request may cost in memory and time.

use std::time::Duration;

use common::config::ConsumerConfig;

use super::route::{Body, Route};

/// What a request may cost. Every limit is checked before the memory or time is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus all headers (and, separately, all chunked trailers); past it, 431.
    pub max_head_bytes: usize,
    /// Header count (and, separately, trailer count); past it, 431.
    pub max_headers: usize,
    /// Decoded body; past it, 413, refused as soon as it is known. The body buffer never
    /// grows past this.
    pub max_body_bytes: usize,
    /// The same for the route whose body is a batch (`/events`, see [`Route`]), whose bodies
    /// hold many events (`max_batch_bytes`).
    pub max_batch_bytes: usize,
    /// Deadline for a whole head once its first byte arrived, then again for the whole body.
    /// Absolute: a client sending one byte a second cannot extend it.
    pub read_timeout: Duration,
    /// Keep-alive: how long to wait for the first byte of the next request.
    pub idle_timeout: Duration,
    /// Timeout of each blocking `write` of a response by the connection's own thread.
    pub write_timeout: Duration,
}

/// Most header fields in one request (and, separately, chunked trailers): real clients send
/// a dozen or two; 64 leaves room for proxies' additions while bounding the per-field work.
pub const MAX_HEADERS: usize = 64;

/// How long one blocking `write` of a response may take: a client that reads nothing for this
/// long is gone, and 10 s is far beyond any live client's pause.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Limits {
    /// The largest body a request for `path` may have: known while the head is read, so an
    /// oversized body is refused before it is read.
    pub fn max_body_for(&self, path: &str) -> usize {
        match Route::of(path).body() {
            Body::Batch => self.max_batch_bytes.max(self.max_body_bytes),
            Body::Event | Body::Ignored => self.max_body_bytes,
        }
    }

    /// These limits for the body of a request for `path`.
    pub fn for_body_of(&self, path: &str) -> Limits {
        Limits {
            max_body_bytes: self.max_body_for(path),
            ..self.clone()
        }
    }

    /// The limits configured for the consumer. The config has been checked (timeouts above 0
    /// and at most 86400 s); a value that slipped through is clamped rather than panicking.
    pub fn from_config(config: &ConsumerConfig) -> Limits {
        Limits {
            max_head_bytes: config.max_header_bytes,
            max_headers: MAX_HEADERS,
            max_body_bytes: config.max_body_bytes,
            max_batch_bytes: config.max_batch_bytes,
            read_timeout: seconds(config.read_timeout_seconds),
            idle_timeout: seconds(config.idle_timeout_seconds),
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

#[cfg(test)]
impl Limits {
    /// Small limits and short deadlines for the unit tests of this layer.
    pub(crate) fn for_tests() -> Limits {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 32,
            max_body_bytes: 1024,
            max_batch_bytes: 1024,
            read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_secs(2),
        }
    }
}

impl Default for Limits {
    /// The limits of the default consumer configuration.
    fn default() -> Limits {
        Limits::from_config(&ConsumerConfig::default())
    }
}

fn seconds(value: f64) -> Duration {
    // `f64::max` turns NaN into 0; values too large for a Duration become a day.
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::from_secs(86_400))
}
