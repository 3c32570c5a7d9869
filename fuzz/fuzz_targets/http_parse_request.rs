//! `parse_request` is a total function: any bytes give a request, "need more", or a 4xx/505,
//! never a panic, and a framed request obeys the limits it was parsed under.
//!
//! The first two input bytes pick the limits (tiny ones reach the 413/431 paths with short
//! inputs); the rest is the request stream.
#![no_main]

use std::time::Duration;

use event_consumer::http::{parse_request, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (limits, input) = match data {
        [a, b, rest @ ..] => (limits_from(*a, *b), rest),
        _ => (Limits::default(), data),
    };
    match parse_request(input, &limits) {
        Ok(None) => {}
        Ok(Some((request, consumed))) => {
            assert!(
                consumed > 0 && consumed <= input.len(),
                "consumed {consumed} of {}",
                input.len()
            );
            assert!(
                request.body.len() <= limits.max_body_bytes,
                "body past the limit"
            );
            // The request is framed by its own bytes: what follows does not change it.
            let again = parse_request(&input[..consumed], &limits);
            assert_eq!(
                again,
                Ok(Some((request, consumed))),
                "re-parse of the consumed bytes differs"
            );
            // Any shorter prefix is "need more" or a refusal, never another request.
            for cut in [0, consumed / 2, consumed - 1] {
                if let Ok(Some(_)) = parse_request(&input[..cut], &limits) {
                    panic!("a {cut}-byte prefix of a {consumed}-byte request framed a request");
                }
            }
        }
        Err(response) => {
            assert!(
                (400..500).contains(&response.status) || response.status == 505,
                "refusal with status {}",
                response.status
            );
        }
    }
});

fn limits_from(a: u8, b: u8) -> Limits {
    if a & 1 == 0 {
        return Limits::default();
    }
    Limits {
        max_head_bytes: 16 + usize::from(a >> 1) * 8,
        max_headers: usize::from(b & 0x0f),
        max_body_bytes: usize::from(b >> 4) * 16,
        read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
    }
}
