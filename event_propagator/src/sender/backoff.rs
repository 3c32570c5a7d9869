//! The wait between attempts: exponential backoff with full jitter, `Retry-After` as a floor,
//! everything capped at `backoff_max_seconds`.

use std::time::Duration;

use crate::answer::seconds;

/// The first retry's longest wait, doubled per retry up to `backoff_max_seconds`: 0.1 s
/// retries a brief blip at once, and 20 retries still ride out about 45 s of outage.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The longest wait before retry number `retry` (1 for the first retry):
    /// `initial × 2^(retry−1)`, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(62) as i32;
        let seconds = self.initial.as_secs_f64() * 2f64.powi(doublings);
        Duration::from_secs_f64(seconds.min(self.max.as_secs_f64()))
    }

    /// The wait before retry number `retry`: uniform between zero and the ceiling, and never
    /// shorter than the consumer's `Retry-After` up to `max` (see [`Backoff::capped`]).
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let jittered = self.ceiling(retry).mul_f64(rng.f64());
        match retry_after {
            Some(floor) => jittered.max(floor.min(self.max)),
            None => jittered,
        }
    }

    /// The log text for a `Retry-After` longer than `max`, which the wait does not honour in
    /// full: `backoff_max_seconds` bounds every wait between attempts, so one 429 or 503 with
    /// `Retry-After: 3600` (a rate limiter, a maintenance page) cannot park an event and its
    /// sender for an hour, and a run with `--count` ends within `max_retries` such waits.
    pub fn capped(&self, retry_after: Option<Duration>) -> Option<String> {
        let asked = retry_after.filter(|asked| *asked > self.max)?;
        Some(format!(
            "Retry-After {} s capped to {} s (backoff_max_seconds)",
            seconds(asked),
            seconds(self.max)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_backoff_ceiling_doubles_then_stays_at_the_cap() {
        let b = backoff();
        let ceilings: Vec<_> = (1..=9).map(|r| b.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.ceiling(1_000_000), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn full_jitter_stays_between_zero_and_the_ceiling_and_spreads_out() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 1..=10 {
            let ceiling = b.ceiling(retry);
            let waits: Vec<_> = (0..2_000).map(|_| b.delay(retry, None, &mut rng)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}");
            let below_tenth = waits.iter().filter(|w| **w < ceiling / 10).count();
            let above_nine_tenths = waits.iter().filter(|w| **w > ceiling * 9 / 10).count();
            // About 200 each for a uniform spread; a fixed or half-jitter wait has none.
            assert!(
                below_tenth > 120 && above_nine_tenths > 120,
                "retry {retry}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_for_the_wait() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            assert!(b.delay(1, Some(Duration::from_secs(3)), &mut rng) >= Duration::from_secs(3));
        }
        assert_eq!(
            b.capped(Some(Duration::from_secs(3))),
            None,
            "under the cap"
        );
        // A Retry-After shorter than the jitter does not shorten it below the random draw.
        let mut a = fastrand::Rng::with_seed(9);
        let mut c = fastrand::Rng::with_seed(9);
        assert_eq!(
            b.delay(4, Some(Duration::ZERO), &mut a),
            b.delay(4, None, &mut c)
        );
    }

    #[test]
    fn a_retry_after_beyond_backoff_max_is_capped_to_it_and_says_so() {
        let b = backoff();
        let mut rng = fastrand::Rng::with_seed(7);
        let hour = Some(Duration::from_secs(3600));
        for retry in [1, 5, 40] {
            assert_eq!(
                b.delay(retry, hour, &mut rng),
                Duration::from_secs(5),
                "retry {retry}"
            );
        }
        assert_eq!(
            b.capped(hour).as_deref(),
            Some("Retry-After 3600 s capped to 5 s (backoff_max_seconds)")
        );
        let short = Backoff {
            initial: BACKOFF_INITIAL,
            max: Duration::from_millis(50),
        };
        assert_eq!(
            short
                .capped(Some(Duration::from_millis(86_399_495)))
                .as_deref(),
            Some("Retry-After 86399.495 s capped to 0.05 s (backoff_max_seconds)")
        );
    }
}
