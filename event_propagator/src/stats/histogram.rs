//! A log-linear histogram of durations: a fixed 30 KB whatever the run's length, exact below
//! 128 µs and within 1/64 (1.6 %) above.

use std::fmt;
use std::time::Duration;

/// Values below this many microseconds get a bucket each.
const EXACT: u64 = 128;
/// Buckets per power of two above [`EXACT`].
const SUB: u64 = 64;
const BUCKETS: usize = (EXACT + (64 - 7) * SUB) as usize;

/// A log-linear histogram of durations in microseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_micros: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_micros: 0,
        }
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max_micros", &self.max_micros)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)] += 1;
        self.total += 1;
        self.max_micros = self.max_micros.max(micros);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<Duration> {
        (self.total > 0).then(|| Duration::from_micros(self.max_micros))
    }

    /// The value at quantile `q` (0 to 1): the upper edge of the bucket holding the
    /// `ceil(q × count)`-th smallest value, never above the exact maximum.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let upper = bucket_upper(index).min(self.max_micros);
                return Some(Duration::from_micros(upper));
            }
        }
        self.max()
    }
}

fn bucket(micros: u64) -> usize {
    if micros < EXACT {
        return micros as usize;
    }
    let exponent = 63 - u64::from(micros.leading_zeros()); // 7 or more
    let shift = exponent - 6; // keeps the top 7 bits: a mantissa in 64..128
    let mantissa = micros >> shift;
    (EXACT + (exponent - 7) * SUB + (mantissa - SUB)) as usize
}

fn bucket_upper(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let exponent = (index - EXACT) / SUB + 7;
    let mantissa = (index - EXACT) % SUB + SUB;
    let shift = exponent - 6;
    let upper = (u128::from(mantissa + 1) << shift) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for micros in (0..5_000).chain([1 << 20, (1 << 40) + 12_345, u64::MAX]) {
            let index = bucket(micros);
            assert!(index >= previous, "{micros}");
            assert!(micros <= bucket_upper(index), "{micros} above its bucket");
            if index > 0 {
                assert!(
                    micros > bucket_upper(index - 1),
                    "{micros} in the wrong bucket"
                );
            }
            previous = index;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_exact_for_small_values_and_close_for_large_ones() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(0.5), None);
        for micros in 1..=100 {
            h.record(Duration::from_micros(micros));
        }
        assert_eq!(h.percentile(0.5), Some(Duration::from_micros(50)));
        assert_eq!(h.percentile(0.99), Some(Duration::from_micros(99)));
        assert_eq!(h.max(), Some(Duration::from_micros(100)));

        let mut h = Histogram::default();
        for micros in 1..=100_000 {
            h.record(Duration::from_micros(micros));
        }
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0)] {
            let got = h.percentile(q).unwrap().as_micros() as f64;
            assert!(got >= exact && got <= exact * 1.016, "q={q}: {got}");
        }
        assert_eq!(h.max(), Some(Duration::from_micros(100_000)));
        assert_eq!(h.count(), 100_000);
    }
}
