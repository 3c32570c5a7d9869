//! The bearer token: `Authorization: Bearer <token>` checked against the configured one.

use common::config::Secret;

/// `Bearer <token>` compared in constant time, so response timing does not reveal how much of
/// a guess was right. The scheme is case-insensitive (RFC 9110, section 11.1).
pub(super) fn bearer_matches(header: Option<&str>, token: &Secret) -> bool {
    let Some(header) = header else { return false };
    let Some((scheme, given)) = header.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare over the longer length so the time depends only on the lengths.
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
