//! The request framer the socket path runs (`Framer::step`, `Framer::space`, `Framer::filled`,
//! driven as `Connection::read_request` drives it) is total: any bytes, arriving in any
//! pieces, give requests, "need more", or a 4xx/505, never a panic; a framed request obeys the
//! limits it was parsed under; and how the bytes are cut into reads never changes what is
//! framed.
//!
//! The socket loop's admission check and budget wait are not fuzzed here: every head is
//! admitted and every budget granted.
//!
//! The first two input bytes pick the limits (tiny ones reach the 413/431 paths with short
//! inputs), the third the size of the reads; the rest is the request stream.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use event_consumer::http::{BodyBudget, Framer, Limits, Request, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (limits, piece, input) = match data {
        [a, b, c, rest @ ..] => (limits_from(*a, *b), usize::from(*c) + 1, rest),
        _ => (Limits::default(), 1, data),
    };
    let in_pieces = frame(input, &limits, piece);
    // One read per byte, and reads as large as the framer takes, frame the same stream.
    let whole = frame(input, &limits, usize::MAX);
    assert_eq!(in_pieces, whole, "the read size changed what was framed");
    for request in &in_pieces.0 {
        assert!(
            request.body.len() <= limits.max_body_bytes,
            "body past the limit"
        );
    }
    if let Some(status) = in_pieces.1 {
        assert!(
            (400..500).contains(&status) || status == 505,
            "refusal with status {status}"
        );
    }
});

/// Feeds `input` in reads of at most `piece` bytes; the requests framed and the refusal, if any.
fn frame(input: &[u8], limits: &Limits, piece: usize) -> (Vec<Request>, Option<u16>) {
    // Unlimited, so how the bytes are cut into reads cannot change what is framed; the budget
    // itself has its own tests.
    let budget = Arc::new(BodyBudget::unlimited());
    let mut framer = Framer::new(limits.clone());
    let mut requests = Vec::new();
    let mut offered = 0;
    loop {
        match framer.step() {
            Ok(Step::Request(request)) => requests.push(request),
            Ok(Step::SendContinue) | Ok(Step::Head) => {}
            Ok(Step::NeedBudget(bytes)) => match budget.try_reserve(bytes) {
                Some(reservation) => framer.grant(reservation),
                None => return (requests, Some(503)),
            },
            Ok(Step::NeedMore) => {
                let rest = &input[offered..];
                if rest.is_empty() {
                    return (requests, None);
                }
                let space = match framer.space() {
                    Ok(space) => space,
                    Err(rejection) => return (requests, Some(rejection.response.status.code())),
                };
                assert!(!space.is_empty(), "the framer offered no room to read into");
                let n = space.len().min(rest.len()).min(piece);
                space[..n].copy_from_slice(&rest[..n]);
                framer.filled(n);
                offered += n;
            }
            Err(rejection) => return (requests, Some(rejection.response.status.code())),
        }
    }
}

fn limits_from(a: u8, b: u8) -> Limits {
    if a & 1 == 0 {
        return Limits::default();
    }
    Limits {
        max_head_bytes: 16 + usize::from(a >> 1) * 8,
        max_headers: usize::from(b & 0x0f),
        max_body_bytes: usize::from(b >> 4) * 16,
        max_batch_bytes: usize::from(b >> 4) * 16,
        read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
    }
}
