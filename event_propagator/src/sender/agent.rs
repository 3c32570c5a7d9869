//! The one `ureq::Agent` of a run and the timeouts it is built with: explicit (ureq has none by
//! default), each phase bounded so a hung lookup or connect is reported as what it is.

use std::time::Duration;

/// Each pooled connection's read and write buffers, allocated and zeroed in full when it is
/// opened. ureq's 128 KiB each cost 256 KiB of memory per send in flight (13 MB of peak RSS
/// with 32 in flight, against 3.4 MB with one); the consumer's answers are a few hundred
/// bytes, and bodies larger than the buffer are written through it in pieces. The read buffer
/// must hold a whole answer head, hence the same cap on that.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

/// Builds the one agent used for the whole run: explicit timeouts (ureq has none by default),
/// statuses as answers rather than errors so `Retry-After` and the error body can be read, no
/// redirects (a POST must reach the configured endpoint, not wherever it points), and room in the
/// pool for a keep-alive connection per send in flight on each of `hosts` endpoints. ureq 3 keeps
/// only 3 idle connections per host (10 in all) by default and closes the rest, so after a stall
/// with more sends in flight the next one would pay for new connections (each also resolves the
/// host on a thread of its own when a timeout is set): a test with two stalls saw 30 connections
/// where 16 suffice, and skipped slots.
pub fn build_agent(
    request_timeout: Duration,
    max_in_flight: usize,
    hosts: usize,
    tls: ureq::tls::TlsConfig,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_resolve(Some(resolve_timeout(request_timeout)))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(request_timeout))
        .max_idle_connections(max_in_flight.saturating_mul(hosts.max(1)))
        .max_idle_connections_per_host(max_in_flight)
        .input_buffer_size(CONNECTION_BUFFER_BYTES)
        .output_buffer_size(CONNECTION_BUFFER_BYTES)
        .max_response_header_size(CONNECTION_BUFFER_BYTES)
        .max_redirects(0)
        .user_agent(concat!("event_propagator/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// How long one TCP (and TLS) connect may take: a consumer that is up accepts within
/// milliseconds, and 3 s rides out a lost SYN (retransmitted after 1 s) without waiting long
/// on a host that is gone; the whole request stays bounded by `request_timeout_seconds`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a name lookup may take, at most the request timeout: glibc asks a DNS server again
/// after 5 s (`timeout:5` in resolv.conf), so a lookup unanswered by then has lost its first
/// query. Set apart from the request timeout so that a lookup that hangs is reported as one
/// (ureq names the phase whose own timeout ran out; without one it says `timeout: global`).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`RESOLVE_TIMEOUT`], but never beyond `request_timeout`: at a tie ureq reports the phase.
pub(super) fn resolve_timeout(request_timeout: Duration) -> Duration {
    RESOLVE_TIMEOUT.min(request_timeout)
}
