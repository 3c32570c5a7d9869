//! A response before it is encoded: a status, a few extra headers and a small body.

use super::status::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// Extra headers, e.g. `("Allow", "POST")`. `Date`, `Content-Type`, `Content-Length`,
    /// `Connection` and `Transfer-Encoding` belong to the encoder: extra headers with those
    /// names are not written.
    pub headers: Vec<(&'static str, String)>,
    /// `application/json` for everything but the metrics text.
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: Status, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    /// Prometheus text exposition format.
    pub fn metrics_text(body: Vec<u8>) -> Response {
        Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Response::json(Status::Ok, body)
        }
    }

    /// `{"error": message}`.
    pub fn error(status: Status, message: &str) -> Response {
        Response::json(status, status.error_body(message))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}
