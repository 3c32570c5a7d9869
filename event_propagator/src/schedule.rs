//! The fixed-rate schedule: slot `k` is due at `start + k × period`, computed from the start
//! every time in whole nanoseconds, so neither the time a send takes nor rounding adds drift.
//!
//! When no sender is free at a slot's due time (every one of the `max_in_flight` sends is still
//! waiting for its answer), the slot goes out as soon as one frees (it is late, and its lateness
//! is measured against its own slot). Of the slots that passed meanwhile, those less than
//! [`CATCH_UP`] late are still sent, one after another, so that a short pause of the process
//! (the machine gave it no CPU for a few milliseconds) costs no events; older ones are skipped
//! rather than fired in a burst, and their number is reported. Pure: the caller passes the
//! current time in.

use std::time::{Duration, Instant};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Slots that passed less than this long ago are sent late rather than skipped. Short enough
/// that only schedules with periods under 20 ms ever send more than one late slot, and then at
/// most 20 ms worth of them; long enough to ride out a scheduling hiccup of a loaded machine.
pub const CATCH_UP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    period: Duration,
    next: u64,
}

/// The slot a send is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub index: u64,
    /// When the send is due. With period 0 this is the moment the slot was taken.
    pub due: Instant,
    /// Slots passed over after this one because no sender was free at their due time.
    pub skipped: u64,
}

impl Schedule {
    /// A schedule whose slot 0 is due at `start`. A zero period means "back to back".
    pub fn new(start: Instant, period: Duration) -> Schedule {
        Schedule {
            start,
            period,
            next: 0,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// When slot `index` is due: `start + index × period`, exactly.
    pub fn due(&self, index: u64) -> Instant {
        self.start + times(self.period, index)
    }

    /// When the next slot is due, without taking it. With period 0 that is `now`.
    pub fn next_due(&self, now: Instant) -> Instant {
        if self.period.is_zero() {
            now
        } else {
            self.due(self.next)
        }
    }

    /// Takes the slot for the next send, given that a sender became free for it at `now`.
    ///
    /// If the next slot is still ahead, it is returned as is. If it has passed, it is still
    /// returned (the caller sends at once and the send counts as late); the later slots that
    /// have also passed by `now` are skipped, except those less than [`CATCH_UP`] late, which
    /// the next calls return.
    pub fn next_slot(&mut self, now: Instant) -> Slot {
        let index = self.next;
        if self.period.is_zero() {
            self.next += 1;
            return Slot {
                index,
                due: now,
                skipped: 0,
            };
        }
        let due = self.due(index);
        let latest_passed = match now.checked_duration_since(self.start) {
            Some(elapsed) => {
                u64::try_from(elapsed.as_nanos() / self.period.as_nanos()).unwrap_or(u64::MAX)
            }
            None => 0,
        };
        if due >= now || latest_passed <= index {
            self.next = index + 1;
            return Slot {
                index,
                due,
                skipped: 0,
            };
        }
        // The first slot after `index` that is due at or after `now - CATCH_UP`.
        let catch_up_from = match now.checked_sub(CATCH_UP) {
            Some(cutoff) => match cutoff.checked_duration_since(self.start) {
                Some(elapsed) => {
                    let period = self.period.as_nanos();
                    u64::try_from(elapsed.as_nanos().div_ceil(period)).unwrap_or(u64::MAX)
                }
                None => 0,
            },
            None => 0,
        }
        .clamp(index + 1, latest_passed + 1);
        self.next = catch_up_from;
        Slot {
            index,
            due,
            skipped: catch_up_from - index - 1,
        }
    }
}

/// `period × n` in whole nanoseconds (no floating point, so no accumulated rounding).
fn times(period: Duration, n: u64) -> Duration {
    let nanos = period.as_nanos() * u128::from(n);
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_kth_slot_is_due_at_start_plus_k_periods_exactly() {
        let start = Instant::now();
        let schedule = Schedule::new(start, ms(1));
        for k in [0u64, 1, 2, 999, 1_000_000, 86_400_000, 10_000_000_000] {
            assert_eq!(
                schedule.due(k) - start,
                Duration::from_nanos(k * 1_000_000),
                "k={k}"
            );
        }
        // A period that is not a whole number of milliseconds, as read from the config.
        let period = Duration::from_secs_f64(0.05);
        let schedule = Schedule::new(start, period);
        for k in [0u32, 1, 3, 7, 1_000, 123_457, 4_000_000] {
            assert_eq!(schedule.due(u64::from(k)), start + period * k, "k={k}");
        }
    }

    #[test]
    fn sends_that_fit_their_slot_do_not_shift_later_slots() {
        let start = Instant::now();
        let period = ms(10);
        let mut schedule = Schedule::new(start, period);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut now = start;
        for k in 0..100_000u64 {
            let slot = schedule.next_slot(now);
            assert_eq!(slot.index, k);
            assert_eq!(slot.due, start + ms(10) * k as u32);
            assert_eq!(slot.skipped, 0);
            // The send starts at its due time and takes anything up to a whole period.
            now = slot.due + period.mul_f64(rng.f64());
        }
        // After 100 000 sends the schedule is exactly where the clock says, not behind.
        assert_eq!(schedule.due(100_000) - start, Duration::from_secs(1_000));
    }

    #[test]
    fn an_overrun_sends_at_once_and_skips_the_slots_that_passed_long_ago() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, ms(10));
        assert_eq!(schedule.next_slot(start).index, 0);
        // Send 0 took 55 ms: slot 1 (due at 10 ms) goes out now, late; slots 2 and 3 (20 and
        // 30 ms) are more than CATCH_UP late and skipped; 4 and 5 (40 and 50 ms) are not.
        let now = start + ms(55);
        let slot = schedule.next_slot(now);
        assert_eq!((slot.index, slot.due, slot.skipped), (1, start + ms(10), 2));
        let slot = schedule.next_slot(now);
        assert_eq!((slot.index, slot.due, slot.skipped), (4, start + ms(40), 0));
        let slot = schedule.next_slot(now + ms(1));
        assert_eq!((slot.index, slot.due, slot.skipped), (5, start + ms(50), 0));
        // The schedule resumes on its grid: slot 6 at 60 ms, not 56 + 10 ms.
        let slot = schedule.next_slot(now + ms(2));
        assert_eq!((slot.index, slot.due, slot.skipped), (6, start + ms(60), 0));
    }

    #[test]
    fn a_pause_shorter_than_the_catch_up_at_1_khz_skips_nothing() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, ms(1));
        for k in 0..10 {
            assert_eq!(schedule.next_slot(start + ms(k)).skipped, 0);
        }
        // The process got no CPU for 19 ms: the 19 slots that passed go out late, in order.
        let now = start + ms(29);
        for k in 10..30 {
            let slot = schedule.next_slot(now);
            assert_eq!((slot.index, slot.skipped), (k, 0));
        }
        assert_eq!(schedule.next_slot(now).due, start + ms(30));
    }

    #[test]
    fn a_catch_up_never_reaches_further_back_than_catch_up() {
        let start = Instant::now();
        for period_us in [100u64, 1_000, 3_000, 7_000, 19_000, 20_000, 45_000] {
            let period = Duration::from_micros(period_us);
            let mut schedule = Schedule::new(start, period);
            schedule.next_slot(start);
            let now = start + Duration::from_secs(1) + Duration::from_micros(37);
            let first = schedule.next_slot(now);
            assert_eq!(first.index, 1, "the oldest passed slot is sent at once");
            let mut sent_late = 0;
            loop {
                let slot = schedule.next_slot(now);
                if slot.due > now {
                    break;
                }
                assert!(now - slot.due < CATCH_UP, "period {period:?}: {slot:?}");
                assert_eq!(slot.skipped, 0);
                sent_late += 1;
            }
            let passed = (Duration::from_secs(1).as_micros() / u128::from(period_us)) as u64;
            assert_eq!(
                1 + first.skipped + sent_late,
                passed,
                "period {period:?}: every passed slot after slot 0 is sent or skipped, once"
            );
        }
    }

    #[test]
    fn a_send_that_is_late_by_less_than_a_period_skips_nothing() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, ms(10));
        schedule.next_slot(start);
        let slot = schedule.next_slot(start + ms(15));
        assert_eq!((slot.index, slot.skipped), (1, 0));
        assert_eq!(schedule.next_slot(start + ms(16)).index, 2);
    }

    #[test]
    fn a_long_outage_skips_every_passed_slot_once() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, ms(1));
        schedule.next_slot(start);
        // One send held up for 10 s by retries: 10 000 slots passed. The oldest is sent late,
        // the last 20 (less than CATCH_UP late) are sent too, the 9 979 between are skipped.
        let now = start + Duration::from_secs(10) + Duration::from_micros(500);
        let slot = schedule.next_slot(now);
        assert_eq!((slot.index, slot.skipped), (1, 9_979));
        for k in 9_981..=10_000 {
            let slot = schedule.next_slot(now);
            assert_eq!((slot.index, slot.skipped), (k, 0));
        }
        let slot = schedule.next_slot(start + Duration::from_secs(10) + ms(1));
        assert_eq!((slot.index, slot.due), (10_001, start + ms(10_001)));
    }

    #[test]
    fn a_zero_period_sends_back_to_back_and_never_skips() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Duration::ZERO);
        for k in 0..5 {
            let now = start + ms(100 * k);
            let slot = schedule.next_slot(now);
            assert_eq!((slot.index, slot.due, slot.skipped), (k, now, 0));
        }
    }
}
