//! How close to its deadline an uninterrupted sleep ends: the precision the pacer is built on.

use std::time::{Duration, Instant};

use event_propagator::Stop;

use crate::helpers::*;

#[test]
fn a_sleep_ends_less_than_15_ms_after_its_deadline() {
    let _alone = TempDir::running_alone();
    let stop = Stop::new();
    let deadline = Instant::now() + Duration::from_millis(20);
    assert!(!stop.sleep_until(deadline));
    let now = Instant::now();
    assert!(now >= deadline);
    assert!(now - deadline < Duration::from_millis(15), "overslept");
}
