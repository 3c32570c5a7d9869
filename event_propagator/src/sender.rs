//! Sending one request (one event, or a batch of them): the HTTP agent, the attempts and their
//! classification, backoff, give-up, gzip.
//!
//! Retry policy: connection errors, timeouts and the answers 408, 429, 500, 502, 503 and 504
//! mean "try again later". Each retry waits a random time between zero and a ceiling that
//! starts at `backoff_initial_seconds` and doubles up to `backoff_max_seconds` ("full jitter":
//! many propagators recovering from the same outage do not come back in lockstep), and at least
//! as long as the consumer's `Retry-After`. Every attempt carries the event's `Idempotency-Key`,
//! so an attempt whose answer was lost and that is then retried is stored once and acknowledged
//! with 200. Any other answer is final: 201 and 200 are delivered, the rest is rejected (the
//! consumer says why in `{"error": ..., "field": ...}`) and not retried, since resending the
//! same bytes would get the same answer.
//!
//! A batch (`POST /events`, a JSON array whose items carry their own `idempotency_key`) follows
//! the same rules as a whole: it is retried with the same body, so with the same keys, and a
//! final refusal refuses every event in it (the consumer stores all or nothing). Its 2xx answer
//! lists one result per item; the items whose `status` is `duplicate` are counted as
//! duplicates. With gzip on, the body is compressed once per request, before its first attempt.
//!
//! One [`Sender`] serves every sender thread of a run (see [`crate::window`]): attempts run on
//! the calling thread, the one that took the event's slot (no hand-off per request), over one
//! shared `ureq::Agent` whose pool keeps up to `max_in_flight` keep-alive connections. The
//! retry-warning limiter, the recovery message and the jitter generator are shared, so an
//! outage logs one line per second however many sends are failing. Bounding a request that
//! hangs while the process shuts down is [`crate::Propagator::run_until_stopped`]'s job.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use common::Secret;

use crate::stop::Stop;

/// Longest answer body read: the consumer's error bodies are a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Added to that per item of a batch: a result (`{"id":..,"received_at":"..","status":".."}`)
/// is under 100 bytes, so 1000 items fit with room to spare.
const MAX_ANSWER_BYTES_PER_ITEM: u64 = 256;
/// Each pooled connection's read and write buffers, allocated and zeroed in full when it is
/// opened. ureq's 128 KiB each cost 256 KiB of memory per send in flight (13 MB of peak RSS
/// with 32 in flight, against 3.4 MB with one); the consumer's answers are a few hundred
/// bytes, and bodies larger than the buffer are written through it in pieces. The read buffer
/// must hold a whole answer head, hence the same cap on that.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;
/// Longest consumer message quoted in a log line.
const MAX_MESSAGE_CHARS: usize = 300;
/// A `Retry-After` beyond a day is taken as a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// What the sender needs to know, taken from the configuration.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub endpoint: String,
    /// Where batches are POSTed (`POST /events`): set when batches are sent.
    pub batch_endpoint: Option<String>,
    /// Compress request bodies with gzip and say so in `Content-Encoding`.
    pub gzip: bool,
    pub auth_token: Option<Secret>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub backoff: Backoff,
    pub shutdown_timeout: Duration,
    /// Sends that may run at once: the connection pool keeps this many idle connections.
    pub max_in_flight: usize,
    /// For `https://` endpoints: trusted CAs, client certificate.
    pub tls: ureq::tls::TlsConfig,
}

/// Builds the one agent used for the whole run: explicit timeouts (ureq has none by default),
/// statuses as answers rather than errors so `Retry-After` and the error body can be read, no
/// redirects (a POST must reach the configured endpoint, not wherever it points), and room in
/// the pool for a keep-alive connection per send in flight. ureq 3 keeps only 3 idle
/// connections per host (10 in all) by default and closes the rest, so after a stall with more
/// sends in flight the next one would pay for new connections (each also resolves the host on
/// a thread of its own when a timeout is set): a test with two stalls saw 30 connections where
/// 16 suffice, and skipped slots.
pub fn build_agent(
    connect_timeout: Duration,
    request_timeout: Duration,
    max_in_flight: usize,
    tls: ureq::tls::TlsConfig,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(connect_timeout))
        .timeout_global(Some(request_timeout))
        .max_idle_connections(max_in_flight)
        .max_idle_connections_per_host(max_in_flight)
        .input_buffer_size(CONNECTION_BUFFER_BYTES)
        .output_buffer_size(CONNECTION_BUFFER_BYTES)
        .max_response_header_size(CONNECTION_BUFFER_BYTES)
        .max_redirects(0)
        .user_agent(concat!("event_propagator/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 201: stored now.
    Created,
    /// 200: the consumer already had this idempotency key (every key of a batch).
    Duplicate,
    /// A batch stored, of whose items the consumer already had this many (some, not all).
    PartlyDuplicate { duplicates: usize },
    /// Worth another attempt later.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A final refusal from the consumer.
    Rejected { status: u16, message: String },
    /// A failure on our side that another attempt cannot fix (a URL ureq refuses, a host name
    /// that cannot be a TLS server name).
    Fatal { reason: String },
}

/// How sending one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The consumer already had it (for a batch: every event in it).
    Duplicate,
    /// A batch delivered, of which the consumer already had `duplicates` events (some, not all).
    PartlyDuplicate {
        duplicates: usize,
    },
    Rejected {
        status: u16,
        message: String,
    },
    GaveUp {
        reason: String,
    },
    /// Still in flight when the shutdown allowance ran out: the consumer may have stored it.
    Abandoned,
}

/// An outcome and the number of attempts it took (retries = attempts − 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub outcome: Outcome,
    pub attempts: u32,
}

/// Sorts an HTTP answer. `now` is used for a `Retry-After` given as a date.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8], now: SystemTime) -> Answer {
    match status {
        201 => Answer::Created,
        200 => Answer::Duplicate,
        // Another 2xx still means the consumer took the event.
        202..=299 => Answer::Created,
        408 | 429 | 500 | 502 | 503 | 504 => Answer::Retry {
            reason: status_text(status),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => Answer::Rejected {
            status,
            message: consumer_message(body),
        },
    }
}

/// Sorts the answer to a batch of `items` events: as [`classify`], and a 2xx other than 200
/// by its results (`{"results": [{"status": "created" | "duplicate", ...}, ...]}`, one per
/// item). The flag is false when such a 2xx has no results array of `items` entries: the
/// consumer took the batch (it said 2xx), so it counts as delivered, and the caller says so.
pub fn classify_batch(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    items: usize,
    now: SystemTime,
) -> (Answer, bool) {
    match classify(status, retry_after, body, now) {
        Answer::Created => match batch_duplicates(body, items) {
            Some(0) => (Answer::Created, true),
            Some(d) if d == items => (Answer::Duplicate, true),
            Some(duplicates) => (Answer::PartlyDuplicate { duplicates }, true),
            None => (Answer::Created, false),
        },
        other => (other, true),
    }
}

/// How many results of a batch's answer say `duplicate`, if it lists one result per item.
fn batch_duplicates(body: &[u8], items: usize) -> Option<usize> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let results = answer.get("results")?.as_array()?;
    if results.len() != items {
        return None;
    }
    let duplicate =
        |r: &serde_json::Value| r.get("status").and_then(|s| s.as_str()) == Some("duplicate");
    Some(results.iter().filter(|r| duplicate(r)).count())
}

/// `body` compressed with gzip. Level 1 (fastest): JSON events shrink by most of what level 6
/// would take, at a fraction of the CPU, and the propagator's CPU is what a load generator
/// runs out of.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .expect("compressing into a Vec cannot fail")
}

/// What one request carries: a single event with its key (`POST /event`, the key in the
/// `Idempotency-Key` header) or a batch whose items carry their keys (`POST /events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post<'a> {
    Event { key: &'a str },
    Batch { items: usize, first_key: &'a str },
}

impl Post<'_> {
    /// How the request is named in log lines.
    fn describe(&self) -> String {
        match self {
            Post::Event { key } => format!("event {key}"),
            Post::Batch { items, first_key } => {
                format!("batch of {items} events from {first_key}")
            }
        }
    }
}

/// Sorts a transport error: anything that can heal (the consumer restarting, a network blip,
/// a timeout, a half-written answer) is retried; errors in our own setup are not.
pub fn classify_error(error: &ureq::Error) -> Answer {
    use ureq::Error as E;
    let fatal = matches!(
        error,
        E::BadUri(_)
            | E::Http(_)
            | E::TlsRequired
            | E::RequireHttpsOnly(_)
            | E::InvalidProxyUrl
            | E::Tls(_)
    );
    // A certificate that fails verification is a connection error like any other (the
    // consumer may get a new certificate, the CA file may be fixed): retried, but logged in
    // words rather than as rustls's enum name.
    let tls_failure = match error {
        E::Io(e) => common::tls::io_verification_failure(e),
        E::Rustls(e) => common::tls::verification_failure(e),
        _ => None,
    };
    let reason = match tls_failure {
        Some(failure) => format!("TLS handshake with the consumer: {failure}"),
        None => one_line(&error.to_string()),
    };
    if fatal {
        Answer::Fatal { reason }
    } else {
        Answer::Retry {
            reason,
            retry_after: None,
        }
    }
}

/// Parses `Retry-After`: whole seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits that overflow u64 are still "a very long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX).min(86_400))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The error text the consumer sent (`{"error": ..., "field": ...}`, for a batch with the
/// `index` of the item at fault), or the start of the body.
fn consumer_message(body: &[u8]) -> String {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let index = json
        .as_ref()
        .and_then(|j| j.get("index"))
        .and_then(|v| v.as_u64());
    // The consumer's batch errors already start with `item N: `; the index is added only when
    // the text does not say it.
    let error = field("error");
    let index = index.filter(|i| {
        error
            .as_deref()
            .is_none_or(|e| !e.starts_with(&format!("item {i}:")))
    });
    let at = match (index, field("field")) {
        (Some(index), Some(field)) => format!(" (item {index}, field `{field}`)"),
        (Some(index), None) => format!(" (item {index})"),
        (None, Some(field)) => format!(" (field `{field}`)"),
        (None, None) => String::new(),
    };
    let text = match error {
        Some(error) => format!("{error}{at}"),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let text = one_line(&text);
    if text.is_empty() {
        return "(no message)".into();
    }
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn status_text(status: u16) -> String {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The longest wait before retry number `retry` (1 for the first retry):
    /// `initial × 2^(retry−1)`, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(62) as i32;
        let seconds = self.initial.as_secs_f64() * 2f64.powi(doublings);
        Duration::from_secs_f64(seconds.min(self.max.as_secs_f64()))
    }

    /// The wait before retry number `retry`: uniform between zero and the ceiling, and never
    /// shorter than the consumer's `Retry-After`.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let jittered = self.ceiling(retry).mul_f64(rng.f64());
        match retry_after {
            Some(floor) => jittered.max(floor),
            None => jittered,
        }
    }
}

/// Lets the first warning through, then at most one per interval, counting the rest, so an
/// outage at 1000 sends per second does not write 1000 lines per second.
#[derive(Debug)]
pub struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    pub fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log a warning now; if so, how many were held back since the last one.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Sends events with retries over one keep-alive agent, on the calling thread; shared by
/// every sender thread of a run.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    agent: ureq::Agent,
    /// `Bearer <token>`, built once.
    authorization: Option<Secret>,
    jitter: Mutex<fastrand::Rng>,
    warnings: Mutex<WarnLimiter>,
    /// Failed attempts since an answer last ended an event, for the recovery message.
    failing_since: Mutex<Option<(Instant, u64)>>,
    /// Whether a batch answer without readable results was logged (once per run).
    unreadable_results_logged: AtomicBool,
}

impl Sender {
    /// `jitter_seed` makes backoff waits reproducible (with one sender thread).
    pub fn new(config: SenderConfig, jitter_seed: u64) -> Sender {
        let agent = build_agent(
            config.connect_timeout,
            config.request_timeout,
            config.max_in_flight,
            config.tls.clone(),
        );
        let authorization = config
            .auth_token
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(format!("Bearer {}", t.expose())));
        Sender {
            config,
            agent,
            authorization,
            jitter: Mutex::new(fastrand::Rng::with_seed(jitter_seed)),
            warnings: Mutex::new(WarnLimiter::new(Duration::from_secs(1))),
            failing_since: Mutex::new(None),
            unreadable_results_logged: AtomicBool::new(false),
        }
    }

    /// Sends one event until it is delivered, rejected, given up or abandoned.
    ///
    /// After a stop request the event still gets `shutdown_timeout` (from the request) to
    /// finish, retries included: attempts started after the request are cut to what is left
    /// of it, and a retry that could only start after it is not waited for. An attempt already
    /// running when the stop comes keeps its own timeout; [`crate::Propagator::run_until_stopped`]
    /// stops waiting for it at the deadline.
    pub fn deliver(&self, body: &[u8], key: &str, stop: &Stop) -> Delivery {
        self.deliver_post(body, Post::Event { key }, stop)
    }

    /// Sends one request (`body` uncompressed) as [`Sender::deliver`] does an event: a batch
    /// is retried whole, with the same body and so the same keys.
    pub fn deliver_post(&self, body: &[u8], post: Post<'_>, stop: &Stop) -> Delivery {
        let compressed;
        let body = if self.config.gzip {
            compressed = gzip(body);
            &compressed[..]
        } else {
            body
        };
        let mut attempts = 0;
        loop {
            let limit = match self.shutdown_deadline(stop) {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return self.finish(Outcome::Abandoned, attempts);
                    }
                    Some(left.min(self.config.request_timeout))
                }
            };
            attempts += 1;
            let answer = self.attempt(body, post, limit);
            let (reason, retry_after) = match answer {
                Answer::Created => return self.finish(Outcome::Delivered, attempts),
                Answer::Duplicate => return self.finish(Outcome::Duplicate, attempts),
                Answer::PartlyDuplicate { duplicates } => {
                    return self.finish(Outcome::PartlyDuplicate { duplicates }, attempts)
                }
                Answer::Rejected { status, message } => {
                    return self.finish(Outcome::Rejected { status, message }, attempts)
                }
                Answer::Fatal { reason } => {
                    return self.finish(Outcome::GaveUp { reason }, attempts)
                }
                Answer::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            let now = Instant::now();
            if self.shutdown_deadline(stop).is_some_and(|d| now >= d) {
                return self.finish(Outcome::Abandoned, attempts);
            }
            lock(&self.failing_since).get_or_insert((now, 0)).1 += 1;
            let retry = attempts; // the retry this failure would lead to
            if retry > self.config.max_retries {
                return self.finish(Outcome::GaveUp { reason }, attempts);
            }
            let wait = self
                .config
                .backoff
                .delay(retry, retry_after, &mut lock(&self.jitter));
            let allowed = lock(&self.warnings).allow(now);
            if let Some(held_back) = allowed {
                let held_back = match held_back {
                    0 => String::new(),
                    n => format!("; {n} similar warnings held back"),
                };
                log::warn!(
                    "{}: {reason}; retry {retry} of {} in {:.3}s{held_back}",
                    post.describe(),
                    self.config.max_retries,
                    wait.as_secs_f64()
                );
            }
            if !self.wait_for_retry(now + wait, stop) {
                return self.finish(Outcome::Abandoned, attempts);
            }
        }
    }

    /// One POST and its classification. `limit` shortens the request timeout during shutdown.
    fn attempt(&self, body: &[u8], post: Post<'_>, limit: Option<Duration>) -> Answer {
        let (url, items) = match post {
            Post::Event { .. } => (&self.config.endpoint, None),
            Post::Batch { items, .. } => match &self.config.batch_endpoint {
                Some(url) => (url, Some(items)),
                None => {
                    return Answer::Fatal {
                        reason: "no batch endpoint configured".into(),
                    }
                }
            },
        };
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Post::Event { key } = post {
            request = request.header("Idempotency-Key", key);
        }
        if self.config.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization.expose());
        }
        if let Some(limit) = limit {
            // Per-request timeouts keep the pooled connection (ureq pools by address and TLS
            // settings, not timeouts).
            request = request.config().timeout_global(Some(limit)).build();
        }
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // Read the body to the end so the connection can go back to the pool; a failure
                // here does not change what the status said.
                let limit =
                    MAX_ANSWER_BYTES + MAX_ANSWER_BYTES_PER_ITEM * items.unwrap_or(0) as u64;
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(limit)
                    .read_to_vec()
                    .unwrap_or_default();
                let now = SystemTime::now();
                let Some(items) = items else {
                    return classify(status, retry_after.as_deref(), &body, now);
                };
                let (answer, readable) =
                    classify_batch(status, retry_after.as_deref(), &body, items, now);
                if !readable && !self.unreadable_results_logged.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "the consumer answered a batch of {items} with {status} but no results \
                         array of {items} entries; counting such batches as delivered without \
                         duplicates (logged once): {}",
                        consumer_message(&body)
                    );
                }
                answer
            }
            Err(error) => classify_error(&error),
        }
    }

    /// When the event in flight must be finished by, once a stop has been requested.
    fn shutdown_deadline(&self, stop: &Stop) -> Option<Instant> {
        stop.requested_at()
            .map(|requested| requested + self.config.shutdown_timeout)
    }

    /// Waits until `retry_at`. Returns false when a stop request means the event must be
    /// abandoned instead: the retry would start after the shutdown allowance.
    fn wait_for_retry(&self, retry_at: Instant, stop: &Stop) -> bool {
        loop {
            if let Some(deadline) = self.shutdown_deadline(stop) {
                if retry_at >= deadline {
                    return false;
                }
                std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
                return true;
            }
            if !stop.sleep_until(retry_at) {
                return true;
            }
            // Stopped during the wait: check the retry time against the allowance.
        }
    }

    fn finish(&self, outcome: Outcome, attempts: u32) -> Delivery {
        let answered = matches!(
            outcome,
            Outcome::Delivered
                | Outcome::Duplicate
                | Outcome::PartlyDuplicate { .. }
                | Outcome::Rejected { .. }
        );
        if answered {
            let recovered = lock(&self.failing_since).take();
            if let Some((since, failures)) = recovered {
                log::info!(
                    "consumer answering again after {failures} failed attempts over {:.1}s",
                    since.elapsed().as_secs_f64()
                );
            }
        }
        Delivery { outcome, attempts }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_backoff_ceiling_doubles_then_stays_at_the_cap() {
        let b = backoff();
        let ceilings: Vec<_> = (1..=9).map(|r| b.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.ceiling(1_000_000), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn full_jitter_stays_between_zero_and_the_ceiling_and_spreads_out() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 1..=10 {
            let ceiling = b.ceiling(retry);
            let waits: Vec<_> = (0..2_000).map(|_| b.delay(retry, None, &mut rng)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}");
            let below_tenth = waits.iter().filter(|w| **w < ceiling / 10).count();
            let above_nine_tenths = waits.iter().filter(|w| **w > ceiling * 9 / 10).count();
            // About 200 each for a uniform spread; a fixed or half-jitter wait has none.
            assert!(
                below_tenth > 120 && above_nine_tenths > 120,
                "retry {retry}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_for_the_wait() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            assert!(b.delay(1, Some(Duration::from_secs(3)), &mut rng) >= Duration::from_secs(3));
        }
        // A Retry-After shorter than the jitter does not shorten it below the random draw.
        let mut a = fastrand::Rng::with_seed(9);
        let mut c = fastrand::Rng::with_seed(9);
        assert_eq!(
            b.delay(4, Some(Duration::ZERO), &mut a),
            b.delay(4, None, &mut c)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cases = [
            ("0", Some(Duration::ZERO)),
            (" 7 ", Some(Duration::from_secs(7))),
            (
                "Sun, 06 Nov 1994 08:50:07 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
            ("999999999999999999999", Some(MAX_RETRY_AFTER)),
            ("1.5", None),
            ("-3", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn answers_are_sorted_into_delivered_retried_and_rejected() {
        let now = SystemTime::now();
        assert_eq!(classify(201, None, b"", now), Answer::Created);
        assert_eq!(classify(200, None, b"", now), Answer::Duplicate);
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(status, Some("2"), b"", now), Answer::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(2)),
                "{status} is retried"
            );
        }
        for status in [400, 401, 403, 404, 409, 413, 415, 422, 501, 301] {
            assert!(
                matches!(classify(status, None, b"", now), Answer::Rejected { status: s, .. } if s == status),
                "{status} is not retried"
            );
        }
    }

    #[test]
    fn a_batch_answer_is_sorted_by_its_results() {
        let now = SystemTime::now();
        let results = |statuses: &[&str]| {
            let items: Vec<String> = statuses
                .iter()
                .map(|s| format!(r#"{{"id": 1, "received_at": "x", "status": "{s}"}}"#))
                .collect();
            format!(r#"{{"results": [{}]}}"#, items.join(","))
        };
        let body = results(&["created", "duplicate", "created"]);
        assert_eq!(
            classify_batch(201, None, body.as_bytes(), 3, now),
            (Answer::PartlyDuplicate { duplicates: 1 }, true)
        );
        let body = results(&["created", "created"]);
        assert_eq!(
            classify_batch(201, None, body.as_bytes(), 2, now),
            (Answer::Created, true)
        );
        let body = results(&["duplicate", "duplicate"]);
        assert_eq!(
            classify_batch(201, None, body.as_bytes(), 2, now),
            (Answer::Duplicate, true),
            "every item a duplicate, even under 201"
        );
        assert_eq!(
            classify_batch(200, None, b"not json", 2, now),
            (Answer::Duplicate, true),
            "200 means every item was a duplicate, whatever the body"
        );
        for (body, reason) in [
            (&b"{\"id\": 1}"[..], "no results"),
            (b"", "no body"),
            (
                br#"{"results": [{"status": "created"}]}"#,
                "fewer results than items",
            ),
        ] {
            assert_eq!(
                classify_batch(201, None, body, 2, now),
                (Answer::Created, false),
                "{reason}: delivered, flagged unreadable"
            );
        }
        assert!(matches!(
            classify_batch(503, Some("1"), b"", 2, now).0,
            Answer::Retry { .. }
        ));
        assert!(matches!(
            classify_batch(413, None, b"", 2, now).0,
            Answer::Rejected { status: 413, .. }
        ));
    }

    #[test]
    fn gzip_gives_a_gzip_member_that_inflates_to_the_body() {
        use std::io::Read as _;
        let body = br#"[{"event_type":"alpha","event_payload":"x"}]"#.repeat(50);
        let compressed = gzip(&body);
        assert_eq!(&compressed[..2], [0x1f, 0x8b]);
        assert!(
            compressed.len() < body.len() / 5,
            "{} bytes",
            compressed.len()
        );
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, body);
    }

    #[test]
    fn a_rejection_quotes_the_consumers_message_on_one_line() {
        let body = br#"{"error": "field `event_type` must not be empty", "field": "event_type"}"#;
        let Answer::Rejected { message, .. } = classify(422, None, body, SystemTime::now()) else {
            panic!("not a rejection");
        };
        assert_eq!(
            message,
            "field `event_type` must not be empty (field `event_type`)"
        );
        let body = br#"{"error": "field `event_type` must not be empty", "index": 7, "field": "event_type"}"#;
        let Answer::Rejected { message, .. } = classify(422, None, body, SystemTime::now()) else {
            panic!("not a rejection");
        };
        assert_eq!(
            message, "field `event_type` must not be empty (item 7, field `event_type`)",
            "a batch's refusal names the item"
        );
        let body = br#"{"error": "item 1: field `event_type` must not be empty", "field": "event_type", "index": 1}"#;
        let Answer::Rejected { message, .. } = classify(422, None, body, SystemTime::now()) else {
            panic!("not a rejection");
        };
        assert_eq!(
            message, "item 1: field `event_type` must not be empty (field `event_type`)",
            "the consumer's own item prefix is not repeated"
        );
        let Answer::Rejected { message, .. } =
            classify(400, None, b"plain\ntext", SystemTime::now())
        else {
            panic!("not a rejection");
        };
        assert_eq!(message, "plain text");
        let long = "x".repeat(5_000);
        let Answer::Rejected { message, .. } =
            classify(400, None, long.as_bytes(), SystemTime::now())
        else {
            panic!("not a rejection");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn transport_errors_are_retried_unless_our_setup_is_wrong() {
        let retried = [
            ureq::Error::ConnectionFailed,
            ureq::Error::HostNotFound,
            ureq::Error::Timeout(ureq::Timeout::Global),
            ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ];
        for error in retried {
            assert!(
                matches!(classify_error(&error), Answer::Retry { .. }),
                "{error}"
            );
        }
        for error in [ureq::Error::TlsRequired, ureq::Error::BadUri("x".into())] {
            assert!(
                matches!(classify_error(&error), Answer::Fatal { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn warnings_are_limited_to_one_per_interval_with_a_count_of_the_rest() {
        let mut limiter = WarnLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        let held: Vec<_> = (1..=999)
            .map(|ms| limiter.allow(t0 + Duration::from_millis(ms)))
            .collect();
        assert!(held.iter().all(Option::is_none));
        assert_eq!(limiter.allow(t0 + Duration::from_millis(1_000)), Some(999));
        assert_eq!(limiter.allow(t0 + Duration::from_millis(1_001)), None);
    }
}
