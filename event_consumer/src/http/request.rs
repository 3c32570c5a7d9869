//! A request as the rest of the service sees it: framed, within the limits, and reduced to
//! what the service uses.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    /// Any other syntactically valid method; the router answers 405.
    Other,
}

impl Method {
    pub(super) fn from_token(token: &str) -> Method {
        // Methods are case-sensitive (RFC 9110, section 9.1): `get` is not GET.
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }
}

/// One request, framed and within the limits. Only the headers the service uses are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target up to `?` (the query is dropped). An absolute-form target
    /// (`http://host/event`) is reduced to its path.
    pub path: String,
    pub content_type: Option<String>,
    /// `Content-Encoding` as sent (the router accepts `gzip` and `identity`).
    pub content_encoding: Option<String>,
    pub authorization: Option<String>,
    /// The raw header value. Bytes that are not UTF-8 are replaced by U+FFFD, so the router's
    /// validation refuses the key instead of this layer guessing.
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
    /// HTTP/1.1: true unless `Connection: close`. HTTP/1.0: false unless `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The request was HTTP/1.0: a kept-alive answer must say `Connection: keep-alive`.
    pub http10: bool,
}

/// What a complete head says before its body is read: enough to refuse the request at once
/// (a missing or wrong token) without spending memory or time on the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: Method,
    /// As in [`Request::path`].
    pub path: &'a str,
    pub authorization: Option<&'a str>,
}
