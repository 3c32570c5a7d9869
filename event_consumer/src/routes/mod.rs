//! Routing: our own small request in, a decision out, and every answer the service builds. No
//! sockets and no database here, so every rule of the HTTP contract is testable as a plain
//! function. The routes themselves, with their paths, methods, token and body rules and
//! metrics labels, are [`crate::http::Route`]: the HTTP layer and the metrics read them too,
//! and neither depends on this module.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `router.rs` | [`route`] (request → [`Action`]) and [`refuse_head`] (401 before the body is read) |
//! | `bodies.rs` | the bodies of `POST /event` and `POST /events`: media type, content coding, parsing |
//! | `token.rs` | the bearer token check, in constant time |
//! | `answers.rs` | answers to stored jobs' outcomes and the server's refusals (busy, stopping, draining) |
//! | `openapi.rs` | `openapi.yaml`, built in and held to the router by tests |

mod answers;
mod bodies;
mod openapi;
mod router;
mod token;

pub use answers::{
    answer_to, draining, internal_error, queue_full, shutting_down, too_many_connections,
};
pub use bodies::BodyRules;
pub use openapi::OPENAPI_YAML;
pub use router::{refuse_head, route, Action};
