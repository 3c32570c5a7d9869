//! `Content-Encoding` of request bodies: none, `identity` or `gzip` (pure-Rust inflate, see
//! `content_coding/gzip.rs`).
//!
//! The size limit applies to the decompressed body while it is decompressed: the output stops
//! one byte past the limit, so a small "bomb" that would expand to gigabytes costs at most the
//! limit in memory and is answered 413.

use std::borrow::Cow;
use std::fmt;

mod gzip;

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum CodingError {
    /// A coding other than gzip or identity (415).
    Unsupported(String),
    /// Not valid gzip (400).
    Corrupt(String),
    /// Larger than `limit` once decompressed (413).
    TooLarge { limit: usize },
}

impl fmt::Display for CodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodingError::Unsupported(coding) => write!(
                f,
                "Content-Encoding `{coding}` is not supported: send gzip or no encoding"
            ),
            CodingError::Corrupt(why) => write!(f, "body is not valid gzip: {why}"),
            CodingError::TooLarge { limit } => write!(
                f,
                "request body is larger than {limit} bytes once decompressed"
            ),
        }
    }
}

/// The body as the client meant it: `body` itself, or its gzip decompression within `limit`.
pub fn decode<'a>(
    content_encoding: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, CodingError> {
    let coding = content_encoding.map(str::trim).unwrap_or("");
    if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(body));
    }
    if !(coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip")) {
        return Err(CodingError::Unsupported(printable(coding)));
    }
    gzip::inflate(body, limit).map(Cow::Owned)
}

/// The coding as it may be quoted in an answer: printable ASCII, at most 64 characters.
fn printable(coding: &str) -> String {
    coding
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn identity_and_no_coding_pass_the_body_through() {
        assert_eq!(decode(None, b"abc", 1).unwrap().as_ref(), b"abc");
        assert_eq!(
            decode(Some("identity"), b"abc", 1).unwrap().as_ref(),
            b"abc"
        );
    }

    #[test]
    fn gzip_is_inflated_within_the_limit() {
        let data = b"{\"event_type\":\"a\",\"event_payload\":\"b\"}".repeat(10);
        let body = gzip(&data);
        assert_eq!(
            decode(Some("gzip"), &body, data.len()).unwrap().as_ref(),
            &data[..]
        );
        assert_eq!(
            decode(Some("GZIP"), &body, data.len() - 1),
            Err(CodingError::TooLarge {
                limit: data.len() - 1
            })
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_without_expanding() {
        // 100 MiB of zeros as 100 gzip members of 1 MiB each: about 100 KB; only limit + 1
        // bytes are ever produced.
        let bomb = gzip(&vec![0u8; 1 << 20]).repeat(100);
        assert!(bomb.len() < 200_000);
        assert_eq!(
            decode(Some("gzip"), &bomb, 4096),
            Err(CodingError::TooLarge { limit: 4096 })
        );
    }

    #[test]
    fn other_codings_and_broken_gzip_are_refused() {
        assert_eq!(
            decode(Some("br"), b"x", 10),
            Err(CodingError::Unsupported("br".into()))
        );
        assert!(matches!(
            decode(Some("gzip"), b"not gzip at all", 10),
            Err(CodingError::Corrupt(_))
        ));
        let mut truncated = gzip(b"hello world");
        truncated.truncate(truncated.len() - 4);
        assert!(matches!(
            decode(Some("gzip"), &truncated, 100),
            Err(CodingError::Corrupt(_))
        ));
    }
}
