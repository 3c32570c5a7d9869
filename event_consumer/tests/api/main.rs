//! The consumer against a real PostgreSQL (see test_support): one test binary, one file per
//! feature.

mod abuse;
mod contract;
mod helpers;
mod hostile;
mod lifecycle;
mod parser_props;
mod store;
mod watchdog;
