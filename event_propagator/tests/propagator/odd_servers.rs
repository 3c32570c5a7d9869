//! Servers that are not quite the consumer, in front of it or instead of it: a rate limiter or a
//! maintenance page asking for an hour's wait, proxies and login pages answering 2xx without
//! the consumer's answer, a redirect, a consumer that never answers. Each test runs the built
//! binary, since what it checks is what an operator reads: the log lines and the summary.

use std::time::Duration;

use crate::helpers::*;

/// Every run here ends in well under a second unless a wait is not bounded.
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_retry_after_of_an_hour_is_capped_to_backoff_max_and_the_cap_is_logged() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, n| match n {
        0 => Reply::status(503).header("Retry-After", "3600"),
        _ => Reply::status(201),
    });
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "{stderr}");
    let gap = requests[1].at - requests[0].at;
    // backoff_max_seconds is 0.05 in the test config: far below an hour, generous for the box.
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
    assert!(
        stderr.contains("Retry-After 3600 s capped to 0.05 s (backoff_max_seconds)"),
        "{stderr}"
    );
}
