//! The event consumer: `POST /event` over a small blocking HTTP/1.1 server, stored in PostgreSQL.
#![forbid(unsafe_code)]

pub mod http;
