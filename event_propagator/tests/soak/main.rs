//! The propagator's soak and timing tests: pacing at 1 kHz and at other fixed rates, lateness,
//! wall-clock bounds, soak sizes, thread growth, the peak memory of a large events file. Not
//! part of `cargo test` (declared with `test = false`, so `make test` stays fast and
//! deterministic); run them with `cargo test -p event_propagator --test soak` (`make soak`).
//! Each takes the machine alone while it measures ([`helpers::TempDir::running_alone`]), and
//! bounds are relative to what a loaded 2-core machine achieves; they can still fail when the
//! machine is starved for CPU for longer than the margins, which is what a soak run is there
//! to show.

#[path = "../propagator/helpers.rs"]
mod helpers;

mod binary;
mod end_to_end;
mod memory;
mod pacing;
mod stop;
mod window;
