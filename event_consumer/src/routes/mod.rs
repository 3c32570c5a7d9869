//! Routing: our own small request in, a decision out, and every answer the service builds. No
//! sockets and no database here, so every rule of the HTTP contract is testable as a plain
//! function.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `route.rs` | [`Route`]: the API's routes, each with its path, method, token, body and metrics label |
//! | `router.rs` | [`route`] (request → [`Action`]) and [`refuse_head`] (401 before the body is read) |
//! | `bodies.rs` | the bodies of `POST /event` and `POST /events`: media type, content coding, parsing |
//! | `token.rs` | the bearer token check, in constant time |
//! | `answers.rs` | answers to stored jobs' outcomes and the server's refusals (busy, stopping, draining) |
//! | `openapi.rs` | `openapi.yaml`, built in and held to the router by tests |

mod answers;
mod bodies;
mod openapi;
mod route;
mod router;
mod token;

pub use answers::{
    answer_to, draining, internal_error, refused, shutting_down, too_many_connections,
};
pub use bodies::BodyRules;
#[cfg(test)]
pub(crate) use openapi::openapi_document;
pub use openapi::OPENAPI_YAML;
pub use route::{Body, Route};
pub use router::{refuse_head, route, Action};
