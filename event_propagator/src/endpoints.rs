//! The endpoints of a run and which one the next attempt goes to: round-robin over those that
//! are up, and a rest for one that is out (no connection, or 503), so that the other sends
//! spend no attempts on it.
//!
//! An endpoint that is out rests for [`REST_INITIAL`], doubling with each failure in a row up to
//! [`REST_MAX`], and is back in the rotation at its first success. When it has rested, it is
//! up again: the next attempt that picks it is the probe, and a failure sends it back to rest
//! for twice as long. The cap is 10 s, not more, because the usual reason for every endpoint
//! answering 503 at once is their shared database being down: when it returns, the events
//! waiting for an endpoint should not wait much longer than a single endpoint's retry backoff
//! (at most `backoff_max_seconds`, 5 s by default) would have.
//!
//! A lone endpoint never rests: it has no alternative, and the retry backoff alone paces its
//! attempts, as before several endpoints existed.
//!
//! Pure: every call takes the time, so tests drive it with instants of their own.

use std::time::{Duration, Instant};

/// The first rest of an endpoint that is out.
pub const REST_INITIAL: Duration = Duration::from_secs(1);
/// The longest rest (see the module documentation for why 10 s).
pub const REST_MAX: Duration = Duration::from_secs(10);

/// Which endpoint the next attempt goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This one, now.
    Now(usize),
    /// Every endpoint rests: this one is back first, at `until`.
    Wait { index: usize, until: Instant },
}

/// What a failure did to the endpoint's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// It was up: it rests for this long from now.
    Rests(Duration),
    /// It already rested (another send saw it fail first), or it is the only endpoint.
    Unchanged,
}

/// The rotation over `count` endpoints, by index.
#[derive(Debug, Clone)]
pub struct Rotation {
    endpoints: Vec<Standing>,
    /// Where the round-robin looks first.
    next: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Standing {
    rests_until: Option<Instant>,
    /// Failures in a row, each of which started a rest.
    failures: u32,
}

impl Standing {
    fn is_up(&self, now: Instant) -> bool {
        self.rests_until.is_none_or(|until| until <= now)
    }
}

impl Rotation {
    /// A rotation over `count` endpoints (at least one), all up.
    pub fn new(count: usize) -> Rotation {
        Rotation {
            endpoints: vec![Standing::default(); count.max(1)],
            next: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Never true: a rotation has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn is_up(&self, index: usize, now: Instant) -> bool {
        self.endpoints[index].is_up(now)
    }

    /// The next endpoint that is up, in turn; `avoid` (where the previous attempt of the same
    /// send failed) only when no other is up. With every endpoint resting, the one back first.
    pub fn pick(&mut self, now: Instant, avoid: Option<usize>) -> Pick {
        let count = self.endpoints.len();
        let in_turn = (0..count).map(|k| (self.next + k) % count);
        let up: Vec<usize> = in_turn.filter(|&i| self.endpoints[i].is_up(now)).collect();
        let chosen = up
            .iter()
            .copied()
            .find(|&i| Some(i) != avoid)
            .or(up.first().copied());
        match chosen {
            Some(index) => {
                self.next = (index + 1) % count;
                Pick::Now(index)
            }
            None => {
                // None is up, so each rests until a time after `now`.
                let rest_end = |s: &Standing| s.rests_until.unwrap_or(now);
                let (index, until) =
                    (1..count).fold((0, rest_end(&self.endpoints[0])), |earliest, i| {
                        let until = rest_end(&self.endpoints[i]);
                        if until < earliest.1 {
                            (i, until)
                        } else {
                            earliest
                        }
                    });
                Pick::Wait { index, until }
            }
        }
    }

    /// Whether an endpoint other than `index` is up now: a retry can go there at once.
    pub fn other_is_up(&self, index: usize, now: Instant) -> bool {
        (0..self.endpoints.len()).any(|i| i != index && self.endpoints[i].is_up(now))
    }

    /// The endpoint is out (no connection, or 503): it rests, unless it already does or is the
    /// only one. Failures seen while it rests (sends that picked it before) do not lengthen
    /// the rest: one outage doubles it once.
    pub fn failed(&mut self, index: usize, now: Instant) -> Failed {
        if self.endpoints.len() == 1 {
            return Failed::Unchanged;
        }
        let standing = &mut self.endpoints[index];
        if !standing.is_up(now) {
            return Failed::Unchanged;
        }
        let doublings = standing.failures.min(30) as i32;
        let rest = REST_INITIAL.mul_f64(2f64.powi(doublings)).min(REST_MAX);
        standing.failures += 1;
        standing.rests_until = Some(now + rest);
        Failed::Rests(rest)
    }

    /// The endpoint answered: back in the rotation at once. Returns whether it had been out.
    pub fn answered(&mut self, index: usize) -> bool {
        let standing = &mut self.endpoints[index];
        let was_out = standing.failures > 0;
        *standing = Standing::default();
        was_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, millis: u64) -> Instant {
        t0 + Duration::from_millis(millis)
    }

    fn picks(rotation: &mut Rotation, now: Instant, n: usize) -> Vec<Pick> {
        (0..n).map(|_| rotation.pick(now, None)).collect()
    }

    #[test]
    fn sends_go_round_robin_over_the_endpoints() {
        let t0 = Instant::now();
        let mut rotation = Rotation::new(3);
        assert_eq!(
            picks(&mut rotation, t0, 7),
            [0, 1, 2, 0, 1, 2, 0].map(Pick::Now)
        );
    }

    #[test]
    fn an_endpoint_that_is_out_is_skipped_until_its_rest_is_over() {
        let t0 = Instant::now();
        let mut rotation = Rotation::new(2);
        assert_eq!(rotation.failed(1, t0), Failed::Rests(REST_INITIAL));
        assert_eq!(picks(&mut rotation, at(t0, 999), 3), [Pick::Now(0); 3]);
        // Rested: in the rotation again, in its turn.
        assert_eq!(
            picks(&mut rotation, at(t0, 1_000), 2),
            [Pick::Now(1), Pick::Now(0)]
        );
    }

    #[test]
    fn the_rest_doubles_with_each_failure_in_a_row_up_to_the_cap_and_an_answer_resets_it() {
        let mut now = Instant::now();
        let mut rotation = Rotation::new(2);
        let mut rests = Vec::new();
        for _ in 0..7 {
            match rotation.failed(0, now) {
                Failed::Rests(rest) => {
                    rests.push(rest.as_secs());
                    now += rest; // the probe after the rest fails again
                }
                Failed::Unchanged => panic!("an endpoint that is up must start a rest"),
            }
        }
        assert_eq!(rests, [1, 2, 4, 8, 10, 10, 10]);
        assert!(rotation.answered(0), "it had been out");
        assert_eq!(rotation.failed(0, now), Failed::Rests(REST_INITIAL));
        assert!(rotation.answered(0));
        assert!(
            !rotation.answered(0),
            "an answer from an endpoint that was up"
        );
    }

    #[test]
    fn failures_seen_while_an_endpoint_rests_do_not_lengthen_its_rest() {
        let t0 = Instant::now();
        let mut rotation = Rotation::new(2);
        assert_eq!(rotation.failed(0, t0), Failed::Rests(REST_INITIAL));
        // Other sends that picked it before it was marked see it fail too.
        assert_eq!(rotation.failed(0, at(t0, 10)), Failed::Unchanged);
        assert_eq!(rotation.failed(0, at(t0, 20)), Failed::Unchanged);
        assert!(
            rotation.is_up(0, at(t0, 1_000)),
            "back after the first rest"
        );
        assert_eq!(
            rotation.failed(0, at(t0, 1_000)),
            Failed::Rests(2 * REST_INITIAL),
            "the probe's failure doubles it once"
        );
    }

    #[test]
    fn a_retry_avoids_the_endpoint_that_just_failed_if_another_is_up() {
        let t0 = Instant::now();
        let mut rotation = Rotation::new(3);
        assert_eq!(rotation.pick(t0, None), Pick::Now(0));
        // A 500 from endpoint 1 (it does not rest): its retry goes elsewhere.
        assert_eq!(rotation.pick(t0, Some(1)), Pick::Now(2));
        assert!(rotation.other_is_up(1, t0));
        // With the others out, the retry goes back to the one that failed.
        rotation.failed(0, t0);
        rotation.failed(2, t0);
        assert!(!rotation.other_is_up(1, t0));
        assert_eq!(rotation.pick(t0, Some(1)), Pick::Now(1));
    }

    #[test]
    fn with_every_endpoint_out_the_wait_is_for_the_one_back_first() {
        let t0 = Instant::now();
        let mut rotation = Rotation::new(3);
        rotation.failed(0, t0);
        rotation.failed(0, at(t0, 1_000)); // rests 2 s from 1 s: until 3 s
        rotation.failed(1, at(t0, 1_500)); // until 2.5 s
        rotation.failed(2, at(t0, 1_200)); // until 2.2 s
        assert_eq!(
            rotation.pick(at(t0, 1_600), None),
            Pick::Wait {
                index: 2,
                until: at(t0, 2_200)
            }
        );
        assert_eq!(rotation.pick(at(t0, 2_200), None), Pick::Now(2));
    }

    #[test]
    fn a_lone_endpoint_never_rests() {
        let t0 = Instant::now();
        let mut rotation = Rotation::new(1);
        for k in 0..5 {
            assert_eq!(rotation.failed(0, at(t0, k)), Failed::Unchanged);
        }
        assert_eq!(rotation.pick(t0, Some(0)), Pick::Now(0));
        assert!(!rotation.answered(0), "never counted as out");
    }
}
