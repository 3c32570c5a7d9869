//! The consumer's HTTP/1.1 layer over `httparse`: request framing, limits and deadlines over a
//! blocking [`std::net::TcpStream`], and response encoding. One file per concept:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `status.rs` | [`Status`]: code, reason phrase, metrics label, error body |
//! | `limits.rs` | [`Limits`]: what one request may cost |
//! | `budget.rs` | [`BodyBudget`]: the request bodies all connections may buffer at once |
//! | `request.rs`, `response.rs` | [`Request`] (what the router sees), [`Response`] |
//! | `route.rs` | [`Route`]: the API's routes, listed once (path, method, token, body, metrics label) |
//! | `head.rs` | finding the end of a head, checking it, how its body is framed |
//! | `chunked.rs` | the chunked transfer coding, decoded incrementally |
//! | `framer/` | [`Framer`]: bytes in, requests out, no I/O (the fuzz target drives it) |
//! | `encode.rs` | a response into bytes, the `Date` cache |
//! | `tls.rs` | [`Tls`]: one connection's rustls session, shared by the reading half and the writer (the server config is `crate::https`'s) |
//! | `writer.rs` | [`Writer`]: the writing half behind one lock, shared with the thread that stores the request's event; every byte sent goes through it |
//! | `connection/` | [`Connection`]: the socket loop around the framer, deadlines, lingering close |
//!
//! Every limit in [`Limits`] is enforced before memory is spent on it, request bodies together
//! stay within the shared [`BodyBudget`], and every read runs against an absolute deadline, so
//! a hostile client can hold neither memory nor a thread for longer than the limits allow.
//!
//! Deliberately left out: HTTP/2, chunked or streamed responses (every answer is a small JSON
//! document), routing (`crate::routes`), decoding compressed bodies (`crate::content_coding`). Why this exists instead of tiny_http: `crates.md`,
//! section 1 (an unchecked `Content-Length` aborts the process, and there are no timeouts or
//! header limits).

mod budget;
mod chunked;
mod connection;
mod encode;
mod framer;
mod head;
mod limits;
mod request;
mod response;
mod route;
mod status;
mod tls;
mod writer;

pub use budget::{BodyBudget, Reservation, MAX_BUFFERED_BODY_BYTES};
pub use connection::{Connection, ReadError, TlsRefusal};
pub use encode::{encode_response, ResponseFraming};
pub use framer::{parse_request, Framer, Phase, Rejection, Step, UNCHARGED_BODY_BYTES};
pub use limits::Limits;
pub use request::{Method, Request, RequestHead};
pub use response::Response;
pub use route::{Body, Route};
pub use status::Status;
pub use tls::Tls;
pub use writer::{OnAnswer, Writer, BORROWED_SEND_TIMEOUT};
