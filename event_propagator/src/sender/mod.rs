//! Sending one request (one event, or a batch of them): the attempts, which endpoint each goes
//! to, give-up, gzip. The HTTP agent and its timeouts are built in `agent.rs`, the wait between
//! attempts is `backoff.rs`'s; how an attempt's result is sorted is `answer/`'s; which
//! endpoint is up, `endpoints.rs`'s.
//!
//! Retry policy: connection errors, timeouts and the answers 408, 429, 500, 502, 503 and 504
//! mean "try again later". With several endpoints, a retry goes at once to another endpoint
//! that is up (round-robin, never the one that just failed while another is up); an endpoint
//! that refused the connection (or could not be reached) or answered 503 rests for a while
//! (see `endpoints.rs`), so other sends skip it. Otherwise, and always with one endpoint,
//! each retry waits a random time between zero and a ceiling that
//! starts at [`BACKOFF_INITIAL`] and doubles up to `backoff_max_seconds` ("full jitter":
//! many propagators recovering from the same outage do not come back in lockstep), and at least
//! as long as the consumer's `Retry-After`, which `backoff_max_seconds` caps too (one line says
//! so). Every attempt carries the event's `Idempotency-Key`,
//! so an attempt whose answer was lost and that is then retried is stored once and acknowledged
//! with 200. Any other answer is final: a 2xx with the consumer's answer is delivered, a 2xx
//! without it unconfirmed (one warning per run names the endpoint and what came back), the rest
//! is rejected (the consumer says why in `{"error": ..., "field": ...}`) and not retried, since
//! resending the same bytes would get the same answer.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::logging::RateLimited;
use common::sync::lock;
use common::Secret;

use crate::answer::{
    classify, classify_batch, classify_error, describe_body, status_text, Answer, Head, Limits,
    REPLAYED_HEADER,
};
use crate::endpoints::{Failed, Pick, Rotation};
use crate::settings::Settings;
use crate::stop::Stop;
use crate::targets::Target;

mod agent;
mod backoff;

use agent::resolve_timeout;
pub use agent::{build_agent, CONNECT_TIMEOUT, RESOLVE_TIMEOUT};
pub use backoff::{Backoff, BACKOFF_INITIAL};

/// Longest answer body read: the consumer's error bodies are a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Added to that per item of a batch: a result (`{"id":..,"received_at":"..","status":".."}`)
/// is under 100 bytes, so 1000 items fit with room to spare.
const MAX_ANSWER_BYTES_PER_ITEM: u64 = 256;

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
    /// A 2xx without the consumer's answer (an empty 200, a 204, a proxy's or login page):
    /// something took it, nothing says it was stored. Not retried, not counted delivered.
    Unconfirmed,
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

/// An outcome, the number of attempts it took (retries = attempts − 1), and the endpoint (by
/// its index in the configuration) that gave the last answer; none when no attempt was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub outcome: Outcome,
    pub attempts: u32,
    pub endpoint: Option<usize>,
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

/// Sends events with retries over one keep-alive agent, on the calling thread; shared by
/// every sender thread of a run.
#[derive(Debug)]
pub struct Sender {
    settings: Arc<Settings>,
    /// The endpoints, resolved at setup, in the order of the configuration.
    targets: Vec<Target>,
    agent: ureq::Agent,
    /// `Bearer <token>`, built once.
    authorization: Option<Secret>,
    jitter: Mutex<fastrand::Rng>,
    /// The retry warnings: one line per second however many sends are failing.
    warnings: Mutex<RateLimited>,
    /// Failed attempts since an answer last ended an event, for the recovery message.
    failing_since: Mutex<Option<(Instant, u64)>>,
    /// Whether a 2xx that is not the consumer's answer was logged (once per run).
    unconfirmed_logged: AtomicBool,
    /// Which endpoint is up, and whose turn it is.
    rotation: Mutex<Rotation>,
}

impl Sender {
    /// `jitter_seed` makes backoff waits reproducible (with one sender thread).
    pub fn new(
        settings: Arc<Settings>,
        targets: Vec<Target>,
        tls: ureq::tls::TlsConfig,
        jitter_seed: u64,
    ) -> Sender {
        let agent = build_agent(
            settings.request_timeout,
            settings.max_in_flight,
            targets.len(),
            tls,
        );
        let authorization = settings
            .auth_token
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(format!("Bearer {}", t.expose())));
        let rotation = Mutex::new(Rotation::new(targets.len()));
        Sender {
            settings,
            targets,
            agent,
            authorization,
            jitter: Mutex::new(fastrand::Rng::with_seed(jitter_seed)),
            warnings: Mutex::new(RateLimited::new(
                log::Level::Warn,
                Duration::from_secs(1),
                "warnings",
            )),
            failing_since: Mutex::new(None),
            unconfirmed_logged: AtomicBool::new(false),
            rotation,
        }
    }

    /// The endpoints, in the order of the configuration.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The retry policy: [`BACKOFF_INITIAL`] doubling up to `backoff_max`.
    fn backoff(&self) -> Backoff {
        Backoff {
            initial: BACKOFF_INITIAL,
            max: self.settings.backoff_max,
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
        let body = if self.settings.gzip {
            compressed = gzip(body);
            &compressed[..]
        } else {
            body
        };
        let mut attempts = 0;
        // Where the previous attempt went: the next one avoids it while another endpoint is up.
        let mut last = None;
        loop {
            let index = match lock(&self.rotation).pick(Instant::now(), last) {
                Pick::Now(index) => index,
                Pick::Wait { until, .. } => {
                    // Every endpoint rests: wait for the first one back. No attempt is spent,
                    // so an event is never given up for want of an endpoint.
                    if !self.wait_for_retry(until, stop) {
                        return self.finish(Outcome::Abandoned, attempts, last);
                    }
                    continue;
                }
            };
            let limit = match self.shutdown_deadline(stop) {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return self.finish(Outcome::Abandoned, attempts, last);
                    }
                    Some(left.min(self.settings.request_timeout))
                }
            };
            attempts += 1;
            last = Some(index);
            let answer = self.attempt(index, body, post, limit);
            let (reason, retry_after, endpoint_down) = match answer {
                Answer::Created => return self.finish(Outcome::Delivered, attempts, last),
                Answer::Duplicate => return self.finish(Outcome::Duplicate, attempts, last),
                Answer::PartlyDuplicate { duplicates } => {
                    let outcome = Outcome::PartlyDuplicate { duplicates };
                    return self.finish(outcome, attempts, last);
                }
                Answer::Unconfirmed => return self.finish(Outcome::Unconfirmed, attempts, last),
                Answer::Rejected { status, message } => {
                    let outcome = Outcome::Rejected { status, message };
                    return self.finish(outcome, attempts, last);
                }
                Answer::Fatal { reason } => {
                    return self.finish(Outcome::GaveUp { reason }, attempts, last)
                }
                Answer::Retry {
                    reason,
                    retry_after,
                    endpoint_down,
                } => (reason, retry_after, endpoint_down),
            };
            let now = Instant::now();
            if endpoint_down {
                self.take_out(index, &reason, now);
            }
            if self.shutdown_deadline(stop).is_some_and(|d| now >= d) {
                return self.finish(Outcome::Abandoned, attempts, last);
            }
            lock(&self.failing_since).get_or_insert((now, 0)).1 += 1;
            let retry = attempts; // the retry this failure would lead to
            if retry > self.settings.max_retries {
                return self.finish(Outcome::GaveUp { reason }, attempts, last);
            }
            // Another endpoint that is up takes the retry at once (its Retry-After, if any,
            // was this endpoint's); with none, the retry waits its backoff.
            let fail_over = lock(&self.rotation).other_is_up(index, now);
            let (wait, capped) = if fail_over {
                (Duration::ZERO, None)
            } else {
                let mut jitter = lock(&self.jitter);
                let backoff = self.backoff();
                let wait = backoff.delay(retry, retry_after, &mut jitter);
                (wait, backoff.capped(retry_after))
            };
            let at = match self.targets.len() {
                1 => String::new(),
                _ => format!(" at {}", self.targets[index].name),
            };
            let when = match (fail_over, capped) {
                (true, _) => "at once on another endpoint".to_owned(),
                (false, None) => format!("in {:.3}s", wait.as_secs_f64()),
                (false, Some(capped)) => format!("in {:.3}s: {capped}", wait.as_secs_f64()),
            };
            lock(&self.warnings).log(
                now,
                format_args!(
                    "{}{at}: {reason}; retry {retry} of {} {when}",
                    post.describe(),
                    self.settings.max_retries,
                ),
            );
            if !fail_over && !self.wait_for_retry(now + wait, stop) {
                return self.finish(Outcome::Abandoned, attempts, last);
            }
        }
    }

    /// Rests an endpoint that is out, with one line saying so (once per rest, however many
    /// sends saw it fail).
    fn take_out(&self, index: usize, reason: &str, now: Instant) {
        if let Failed::Rests(rest) = lock(&self.rotation).failed(index, now) {
            log::warn!(
                "endpoint {} is out ({reason}): sending to the others for {}s",
                self.targets[index].name,
                rest.as_secs_f64()
            );
        }
    }

    /// One POST and its classification. `limit` shortens the request timeout during shutdown.
    fn attempt(
        &self,
        endpoint: usize,
        body: &[u8],
        post: Post<'_>,
        limit: Option<Duration>,
    ) -> Answer {
        let target = &self.targets[endpoint];
        let (url, items) = match post {
            Post::Event { .. } => (&target.event_url, None),
            Post::Batch { items, .. } => match &target.batch_url {
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
        if self.settings.gzip {
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
            Ok(response) => self.sort_answer(endpoint, post, items, response),
            Err(error) => self.sort_failure(url, limit, &error),
        }
    }

    /// Reads an answer (a batch's of `items` events) and sorts it, with the run's one warning
    /// when a 2xx is not the consumer's answer.
    fn sort_answer(
        &self,
        endpoint: usize,
        post: Post<'_>,
        items: Option<usize>,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Answer {
        let header = |name: &str| {
            let value = response.headers().get(name)?.to_str().ok()?;
            Some(value.to_owned())
        };
        let retry_after = header("retry-after");
        let location = header("location");
        let content_type = header("content-type");
        let replayed =
            header(REPLAYED_HEADER).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let status = response.status().as_u16();
        // Read the body to the end so the connection can go back to the pool; a failure here
        // does not change what the status said, but leaves a 2xx unconfirmed.
        let limit = MAX_ANSWER_BYTES + MAX_ANSWER_BYTES_PER_ITEM * items.unwrap_or(0) as u64;
        let (body, unread) = match response.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(body) => (body, None),
            Err(error) => (Vec::new(), Some(error.to_string())),
        };
        let head = Head {
            status,
            retry_after: retry_after.as_deref(),
            replayed,
            location: location.as_deref(),
        };
        let now = SystemTime::now();
        let answer = match items {
            None => classify(&head, &body, now),
            Some(items) => classify_batch(&head, &body, items, now),
        };
        if answer == Answer::Unconfirmed {
            let what = match unread {
                Some(error) => format!("a body that could not be read ({error})"),
                None => describe_body(content_type.as_deref(), &body),
            };
            self.warn_unconfirmed(endpoint, post, status, &what);
        }
        answer
    }

    /// Sorts a request to `url` that got no answer; `limit`, the shutdown's cut of the request
    /// timeout, names a timeout that ran out.
    fn sort_failure(&self, url: &str, limit: Option<Duration>, error: &ureq::Error) -> Answer {
        let request_timeout = self.settings.request_timeout;
        let uri = url.parse::<ureq::http::Uri>().ok();
        let limits = Limits {
            request: limit.unwrap_or(request_timeout),
            shutdown: limit.is_some_and(|l| l < request_timeout),
            resolve: resolve_timeout(request_timeout),
            connect: CONNECT_TIMEOUT,
            host: uri
                .as_ref()
                .and_then(|u| u.host())
                .unwrap_or("the endpoint"),
        };
        classify_error(error, &limits)
    }

    /// The one warning of a run about 2xx answers that are not the consumer's, single events
    /// and batches alike: which endpoint, what came back (`what`), and that such sends are
    /// counted as unconfirmed. Once per run: a proxy's page answers every send the same way.
    fn warn_unconfirmed(&self, endpoint: usize, post: Post<'_>, status: u16, what: &str) {
        if self.unconfirmed_logged.swap(true, Ordering::Relaxed) {
            return;
        }
        let target = &self.targets[endpoint];
        let (url, expected) = match post {
            Post::Event { .. } => (
                &target.name,
                "a JSON object with the stored row's `id`".into(),
            ),
            Post::Batch { items, .. } => (
                target.batch_name.as_ref().unwrap_or(&target.name),
                format!("a JSON object with a results array of {items} entries"),
            ),
        };
        log::warn!(
            "{url} answered {} with {} and {what}: not the consumer's answer ({expected}), so \
             nothing confirms it was stored; counting such sends as unconfirmed, not delivered \
             (logged once)",
            post.describe(),
            status_text(status),
        );
    }

    /// When the event in flight must be finished by, once a stop has been requested.
    fn shutdown_deadline(&self, stop: &Stop) -> Option<Instant> {
        stop.requested_at()
            .map(|requested| requested + self.settings.shutdown_timeout)
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

    fn finish(&self, outcome: Outcome, attempts: u32, endpoint: Option<usize>) -> Delivery {
        let answered = matches!(
            outcome,
            Outcome::Delivered
                | Outcome::Duplicate
                | Outcome::PartlyDuplicate { .. }
                | Outcome::Unconfirmed
                | Outcome::Rejected { .. }
        );
        if let (true, Some(index)) = (answered, endpoint) {
            if lock(&self.rotation).answered(index) {
                log::info!("endpoint {} answering again", self.targets[index].name);
            }
        }
        if answered {
            let recovered = lock(&self.failing_since).take();
            if let Some((since, failures)) = recovered {
                log::info!(
                    "consumer answering again after {failures} failed attempts over {:.1}s",
                    since.elapsed().as_secs_f64()
                );
            }
        }
        Delivery {
            outcome,
            attempts,
            endpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
