//! The statistics of `make bench`: percentiles of a sample and the median of rounds.

/// The `q`-quantile (0 ≤ q ≤ 1) of `sorted` by nearest rank: the value at index ⌊n·q⌋, the
/// last one for q = 1. pgbench's own `--latency` report uses no other rule we could match, so
/// this is the rule the earlier awk used, kept so figures stay comparable across runs.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let index = ((sorted.len() as f64 * q) as usize).min(last);
    Some(sorted[index])
}

/// The index (into `values`) of the median, the lower middle for an even count: with few
/// rounds a real round's figures are shown, never an average of two.
pub fn median_index(values: &[f64]) -> Option<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    // Ties go to the earlier round, as `sort -n` on "value round" did.
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    order.get(values.len().checked_sub(1)? / 2).copied()
}

/// The median round's value (the lower middle: a real round's figure), 0 for none.
pub fn median(values: &[f64]) -> f64 {
    median_index(values).map_or(0.0, |i| values[i])
}

/// Latency of a sample in milliseconds: median, 99th percentile and maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From latencies in microseconds, in any order; None for an empty sample.
    pub fn of_micros(mut micros: Vec<f64>) -> Option<Latency> {
        micros.sort_by(f64::total_cmp);
        Some(Latency {
            p50_ms: percentile(&micros, 0.50)? / 1000.0,
            p99_ms: percentile(&micros, 0.99)? / 1000.0,
            max_ms: percentile(&micros, 1.0)? / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank_and_the_maximum_is_the_last() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), Some(51.0));
        assert_eq!(percentile(&v, 0.99), Some(100.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle_and_ties_keep_round_order() {
        assert_eq!(median_index(&[3.0, 1.0, 2.0]), Some(2));
        assert_eq!(median_index(&[4.0, 1.0, 3.0, 2.0]), Some(3));
        assert_eq!(median_index(&[1.0, 1.0, 1.0]), Some(1));
        assert_eq!(median_index(&[7.0]), Some(0));
        assert_eq!(median_index(&[]), None);
    }

    #[test]
    fn the_median_value_is_the_lower_middle_rounds_and_zero_without_rounds() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn latency_comes_in_milliseconds_from_micros() {
        let l = Latency::of_micros(vec![3000.0, 1000.0, 2000.0]).unwrap();
        assert_eq!(
            l,
            Latency {
                p50_ms: 2.0,
                p99_ms: 3.0,
                max_ms: 3.0
            }
        );
    }
}
