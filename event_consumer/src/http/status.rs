//! The status codes the service answers with, as a type: each one owns its code, its reason
//! phrase and its label in `/metrics`, so no list of codes is kept by hand anywhere else.

/// A status the consumer sends. `100 Continue` is not here: it is an interim answer written by
/// the connection itself, never a [`crate::http::Response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Created,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ContentTooLarge,
    UnsupportedMediaType,
    ExpectationFailed,
    UnprocessableContent,
    RequestHeaderFieldsTooLarge,
    InternalServerError,
    ServiceUnavailable,
    HttpVersionNotSupported,
}

impl Status {
    /// Every status, in code order; [`Status::index`] is the position in this list.
    pub const ALL: [Status; 15] = [
        Status::Ok,
        Status::Created,
        Status::BadRequest,
        Status::Unauthorized,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::ContentTooLarge,
        Status::UnsupportedMediaType,
        Status::ExpectationFailed,
        Status::UnprocessableContent,
        Status::RequestHeaderFieldsTooLarge,
        Status::InternalServerError,
        Status::ServiceUnavailable,
        Status::HttpVersionNotSupported,
    ];

    /// The numeric code, and (the same digits) the `status` label in `/metrics`.
    pub const fn code(self) -> u16 {
        self.code_and_reason().0
    }

    /// The `status` label in `/metrics`.
    pub const fn label(self) -> &'static str {
        self.code_and_reason().1
    }

    /// The reason phrase written after the code (RFC 9110's names).
    pub const fn reason(self) -> &'static str {
        self.code_and_reason().2
    }

    /// Position in [`Status::ALL`], for per-status counters.
    pub const fn index(self) -> usize {
        self as usize
    }

    const fn code_and_reason(self) -> (u16, &'static str, &'static str) {
        match self {
            Status::Ok => (200, "200", "OK"),
            Status::Created => (201, "201", "Created"),
            Status::BadRequest => (400, "400", "Bad Request"),
            Status::Unauthorized => (401, "401", "Unauthorized"),
            Status::NotFound => (404, "404", "Not Found"),
            Status::MethodNotAllowed => (405, "405", "Method Not Allowed"),
            Status::RequestTimeout => (408, "408", "Request Timeout"),
            Status::ContentTooLarge => (413, "413", "Content Too Large"),
            Status::UnsupportedMediaType => (415, "415", "Unsupported Media Type"),
            Status::ExpectationFailed => (417, "417", "Expectation Failed"),
            Status::UnprocessableContent => (422, "422", "Unprocessable Content"),
            Status::RequestHeaderFieldsTooLarge => (431, "431", "Request Header Fields Too Large"),
            Status::InternalServerError => (500, "500", "Internal Server Error"),
            Status::ServiceUnavailable => (503, "503", "Service Unavailable"),
            Status::HttpVersionNotSupported => (505, "505", "HTTP Version Not Supported"),
        }
    }

    /// `{"error": message}`, the body of every refusal, with the message escaped by serde_json.
    pub fn error_body(self, message: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(message.len() + 12);
        body.extend_from_slice(b"{\"error\":");
        serde_json::to_writer(&mut body, message).expect("a string always serialises to JSON");
        body.push(b'}');
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_in_index_order_and_codes_match_their_labels() {
        for (i, status) in Status::ALL.iter().enumerate() {
            assert_eq!(status.index(), i, "{status:?}");
            assert_eq!(status.label(), status.code().to_string(), "{status:?}");
            assert!(!status.reason().is_empty(), "{status:?}");
        }
        assert!(Status::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn error_bodies_are_json_with_the_message_escaped() {
        let body = Status::BadRequest.error_body("a \"quoted\"\nline");
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["error"], "a \"quoted\"\nline");
    }
}
