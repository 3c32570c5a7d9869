//! The bench library: what `make bench`'s and `make bench-compare`'s binaries share, so each
//! binary (src/main.rs is `bench_report`, src/bin/ the load tools) is an entry point over it.
//!
//! - `stats`: percentiles and the median of rounds; `tool`: flag reading and exit statuses of
//!   the load tools; `shapes`: the event rows `write_paths` and `batch_load` both write.
//! - `inputs`: the raw outputs of scripts/bench.sh and scripts/bench-compare.sh, read into
//!   typed measurements; `rounds`, `batches`, `report`: `make bench`'s report
//!   (bench/RESULTS.md), `spool` its section on the propagator's spool; `compare`: `make
//!   bench-compare`'s report of two consumer binaries; `retention`: the section on throughput
//!   while a backlog is pruned.
#![forbid(unsafe_code)]

pub mod batches;
pub mod compare;
pub mod inputs;
pub mod report;
pub mod retention;
pub mod rounds;
pub mod shapes;
pub mod spool;
pub mod stats;
pub mod tool;
