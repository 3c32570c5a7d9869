//! Sorting the result of one attempt: an HTTP answer (or a batch's, by its results) or a
//! transport error, into delivered, retried later (and whether the endpoint itself is down) or
//! refused for good.
//!
//! Connection errors, timeouts and the answers 408, 429, 500, 502, 503 and 504 mean "try again
//! later"; a refused, reset or timed-out connection, or a 503, also means "this endpoint is
//! out for now" (see `endpoints.rs`). Any other answer is final: a 2xx carrying the consumer's
//! answer (the stored row's `id`, or a batch's results) is delivered, a 2xx without it is
//! unconfirmed (a proxy's default page, a login page: nothing says the event was stored), the
//! rest is rejected (the consumer says why in `{"error": ..., "field": ...}`; a redirect, where
//! it points), since resending the same bytes would get the same answer.

use std::time::{Duration, SystemTime};

/// Longest consumer message quoted in a log line.
const MAX_MESSAGE_CHARS: usize = 300;
/// How much of a 2xx body that is not the consumer's answer a warning quotes: enough to tell a
/// login page from a proxy's default page.
const MAX_QUOTED_BODY_CHARS: usize = 120;
/// A `Retry-After` beyond a day is taken as a day, so the figure a log line quotes stays readable;
/// the wait itself is capped far lower, at `backoff_max_seconds` (see `sender/backoff.rs`).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 201: stored now.
    Created,
    /// The consumer says it already had this idempotency key: a 200 with
    /// `Idempotent-Replayed: true` for one event, every result `duplicate` for a batch.
    Duplicate,
    /// A batch stored, of whose items the consumer already had this many (some, not all).
    PartlyDuplicate { duplicates: usize },
    /// A 2xx without the consumer's answer in its body: whoever sent it took the request, and
    /// nothing says the consumer stored it. Not retried (the same server would answer the same).
    Unconfirmed,
    /// Worth another attempt later.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        /// The endpoint itself is out (no connection, or 503): skip it for a while.
        endpoint_down: bool,
    },
    /// A final refusal from the consumer.
    Rejected { status: u16, message: String },
    /// A failure on our side that another attempt cannot fix (a URL ureq refuses, a host name
    /// that cannot be a TLS server name).
    Fatal { reason: String },
}

/// The header our consumer sends with a 200 for a key it already had (Stripe's name for it).
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// What sorting an answer needs from its head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    /// The answer carried `Idempotent-Replayed: true`.
    pub replayed: bool,
    /// A redirect's target, quoted when it is refused.
    pub location: Option<&'a str>,
}

#[cfg(test)]
impl Head<'_> {
    /// A head with only a status.
    pub fn status(status: u16) -> Head<'static> {
        Head {
            status,
            ..Head::default()
        }
    }
}

/// Sorts an HTTP answer to one event. A 2xx is delivered only with the consumer's answer in
/// its body (see [`is_consumer_answer`]); a 200 so answered without `Idempotent-Replayed:
/// true` is delivered, not a duplicate: a server other than ours may answer 200 for an event
/// it stored now. `now` is used for a `Retry-After` given as a date.
pub fn classify(head: &Head<'_>, body: &[u8], now: SystemTime) -> Answer {
    match head.status {
        200..=299 if !is_consumer_answer(body) => Answer::Unconfirmed,
        200 if head.replayed => Answer::Duplicate,
        200..=299 => Answer::Created,
        408 | 429 | 500 | 502 | 503 | 504 => Answer::Retry {
            reason: status_text(head.status),
            retry_after: head.retry_after.and_then(|v| parse_retry_after(v, now)),
            // The consumer's word for "not me, not now": database down, stopping, full.
            endpoint_down: head.status == 503,
        },
        300..=399 => Answer::Rejected {
            status: head.status,
            message: redirect_message(head.location),
        },
        status => Answer::Rejected {
            status,
            message: consumer_message(body),
        },
    }
}

/// Whether a 2xx body is the consumer's answer to one event: a JSON object with the stored
/// row's integer `id` (`{"id":1,"received_at":"…"}`). An empty body, a page, or JSON without
/// it came from something else in front of, or instead of, the consumer.
pub fn is_consumer_answer(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|answer| {
        answer
            .get("id")
            .is_some_and(|id| id.is_i64() || id.is_u64())
    })
}

/// Sorts the answer to a batch of `items` events: as [`classify`], and a 2xx by its results
/// (`{"results": [{"status": "created" | "duplicate", ...}, ...]}`, one per item): only items
/// the consumer calls `duplicate` are duplicates. A 2xx without a results array of `items`
/// entries is not the consumer's answer: unconfirmed.
pub fn classify_batch(head: &Head<'_>, body: &[u8], items: usize, now: SystemTime) -> Answer {
    if !(200..=299).contains(&head.status) {
        return classify(head, body, now);
    }
    match batch_duplicates(body, items) {
        Some(0) => Answer::Created,
        Some(d) if d == items => Answer::Duplicate,
        Some(duplicates) => Answer::PartlyDuplicate { duplicates },
        None => Answer::Unconfirmed,
    }
}

/// What came back, for the warning about a 2xx that is not the consumer's answer: its
/// `Content-Type` and the start of its body on one line, control characters escaped, so a
/// proxy's page or a login form can be recognised without flooding the log.
pub fn describe_body(content_type: Option<&str>, body: &[u8]) -> String {
    let content_type = match content_type {
        Some(value) => format!("Content-Type `{}`", one_line(value)),
        None => "no Content-Type".to_owned(),
    };
    if body.is_empty() {
        return format!("{content_type}, empty body");
    }
    let text = String::from_utf8_lossy(body);
    let start: String = text.chars().take(MAX_QUOTED_BODY_CHARS).collect();
    let more = if start.len() < text.len() { "…" } else { "" };
    format!(
        "{content_type}, {} bytes: \"{}{more}\"",
        body.len(),
        start.escape_debug()
    )
}

/// The message of a refused redirect: redirects are not followed, since a POST must reach the
/// configured endpoint, so the operator needs to know where it pointed.
fn redirect_message(location: Option<&str>) -> String {
    let advice = "a redirect, not followed (point the endpoint at the consumer itself)";
    match location {
        Some(location) => format!(
            "{advice}: Location: {}",
            crate::targets::redact_userinfo(&one_line(location))
        ),
        None => format!("{advice}: no Location given"),
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

/// The bounds on one attempt, to say which one ran out: ureq names only its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits<'a> {
    /// The whole attempt: `request_timeout_seconds`, or what is left of the shutdown allowance.
    pub request: Duration,
    /// `request` is what was left of `shutdown_timeout_seconds`, less than the request timeout.
    pub shutdown: bool,
    pub resolve: Duration,
    pub connect: Duration,
    /// The endpoint's host, as the name lookup saw it.
    pub host: &'a str,
}

/// What a timeout means, named by the setting that bounded it and its value: `timeout: global`
/// does not tell an operator which knob to turn, nor that a name lookup hung.
fn timeout_text(timeout: ureq::Timeout, limits: &Limits<'_>) -> String {
    use ureq::Timeout as T;
    match timeout {
        T::Global if limits.shutdown => format!(
            "no answer within the {} s left of shutdown_timeout_seconds",
            seconds(limits.request)
        ),
        T::Global => format!(
            "no answer within request_timeout_seconds ({} s)",
            seconds(limits.request)
        ),
        T::Resolve => format!(
            "the name lookup of {} hung: no address within {} s (is the DNS server reachable?)",
            limits.host,
            seconds(limits.resolve)
        ),
        T::Connect => format!(
            "no connection to {} within {} s (TCP and TLS connect)",
            limits.host,
            seconds(limits.connect)
        ),
        other => format!("timed out ({other})"),
    }
}

/// Seconds for a log line, to the millisecond and without trailing zeros: `3600`, `0.05`.
pub fn seconds(duration: Duration) -> String {
    let text = format!("{:.3}", duration.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Sorts a transport error: anything that can heal (the consumer restarting, a network blip,
/// a timeout, a half-written answer) is retried; errors in our own setup are not. `limits`
/// name a timeout.
pub fn classify_error(error: &ureq::Error, limits: &Limits<'_>) -> Answer {
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
    let reason = match (&tls_failure, error) {
        (Some(failure), _) => format!("TLS handshake with the consumer: {failure}"),
        (None, E::Timeout(timeout)) => timeout_text(*timeout, limits),
        (None, _) => one_line(&error.to_string()),
    };
    if fatal {
        Answer::Fatal { reason }
    } else {
        Answer::Retry {
            reason,
            retry_after: None,
            endpoint_down: tls_failure.is_some() || no_connection(error),
        }
    }
}

/// Whether the error says no connection to the endpoint could be made or kept: refused,
/// reset, unreachable, a host that does not resolve, a connect that timed out, a failed TLS
/// handshake. A timeout waiting for an answer is not one: the consumer may be slow, not gone.
fn no_connection(error: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    use ureq::Error as E;
    match error {
        E::ConnectionFailed | E::HostNotFound | E::Rustls(_) => true,
        E::Timeout(timeout) => matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        E::Io(e) => matches!(
            e.kind(),
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable
        ),
        _ => false,
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
pub fn consumer_message(body: &[u8]) -> String {
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

/// `503 Service Unavailable`: the status with its reason phrase, for log lines.
pub fn status_text(status: u16) -> String {
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

#[cfg(test)]
mod tests;
