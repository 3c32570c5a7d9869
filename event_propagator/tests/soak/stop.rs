//! How close to its deadline an uninterrupted sleep ends: the precision the pacer is built on.

use std::time::{Duration, Instant};

use event_propagator::Stop;

use test_support::timing::{check, met_in_one_attempt};

use crate::helpers::*;

#[test]
fn a_sleep_ends_less_than_15_ms_after_its_deadline() {
    let _alone = TempDir::running_alone();
    met_in_one_attempt("a 20 ms sleep", || {
        let stop = Stop::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!stop.sleep_until(deadline));
        let now = Instant::now();
        assert!(now >= deadline);
        let late = now - deadline;
        check(late < Duration::from_millis(15), || {
            format!("overslept by {late:?}")
        })
    });
}
