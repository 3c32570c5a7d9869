//! The consumer against a real PostgreSQL (see test_support): one test binary, one file per
//! feature.

mod contract;
mod helpers;
mod hostile;
mod lifecycle;
mod store;
