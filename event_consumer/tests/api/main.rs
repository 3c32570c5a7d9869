//! The consumer against a real PostgreSQL (see test_support): one test binary, one file per
//! feature. Deterministic and within the default `ulimit -n` of 1024: soak sizes and
//! wall-clock bounds live in the `soak` binary (`make soak`).

mod batches;
mod connections;
mod contract;
mod db_tls;
mod drain;
mod early_refusals;
mod failover;
mod helpers;
mod hostile;
mod https;
mod lifecycle;
mod module_graph;
mod occurred_at;
mod outages;
mod parser_props;
mod readiness;
mod readme_examples;
mod retention;
mod store;
