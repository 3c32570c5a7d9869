//! Counters for one run, lateness percentiles, and the summary line printed at the end.
//!
//! Lateness goes into a log-linear histogram instead of a list of samples, so an endless run at
//! 1000 sends per second keeps a fixed 30 KB of memory: exact below 128 µs, and within 1/64
//! (1.6 %) above, which is finer than a timer can measure at those sizes anyway.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::sender::{Delivery, Outcome};

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `--count` events were sent.
    Count,
    /// `--duration` passed: no new send was due before it ran out.
    Duration,
    /// SIGTERM or SIGINT (or a test) asked it to stop.
    Stopped,
    /// The keys log could not be written, so the next event could not be sent.
    KeysLogFailed,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Count => "count",
            End::Duration => "duration",
            End::Stopped => "signal",
            End::KeysLogFailed => "keys-log-error",
        }
    }
}

/// Running totals, updated once per send and once per outcome (sends run on several threads,
/// so outcomes may come in another order than the sends). A send is one request: one event, or
/// a batch of them; the event counters count events, `batches`, `retries` and the send numbers
/// count requests.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Events sent.
    pub sent: u64,
    /// Requests sent (with batch size 1, one per event).
    pub batches: u64,
    /// Stored by the consumer: 201 and 200 answers. Includes `duplicates`.
    pub delivered: u64,
    /// Of `delivered`, the 200 answers: the consumer already had the key.
    pub duplicates: u64,
    /// Answered 2xx without the consumer's answer: not counted in `delivered`.
    pub unconfirmed: u64,
    pub rejected: u64,
    pub given_up: u64,
    /// In flight when the shutdown wait ran out; the consumer may or may not have it.
    pub abandoned: u64,
    /// Attempts beyond the first, over all requests.
    pub retries: u64,
    pub skipped_slots: u64,
    /// Of `skipped_slots`, those skipped because every one of the `max_in_flight` sends was
    /// waiting for the consumer (or retrying) at some time after the late slot was due: the
    /// consumer did not keep up. The others were skipped with senders to spare all along,
    /// because this process was held up.
    pub skipped_window_full: u64,
    pub lateness: Histogram,
    /// The most sends in flight at once so far.
    pub max_in_flight_used: usize,
    /// Of `delivered`, by the endpoint that answered (its index in the configuration).
    pub delivered_by_endpoint: Vec<u64>,
    /// With a spool: events it held at start, to be replayed.
    pub replayed: u64,
    /// With a spool: events refused for good and moved to `rejected.ndjson` (replayed ones
    /// included).
    pub dead_lettered: u64,
    /// With a spool: slots skipped, with no event generated, because the spool was full.
    pub skipped_spool_full: u64,
    /// With a spool: events in it, unsettled, when the summary was made; none without one.
    pub spooled: Option<u64>,
    /// With a spool: events of this run whose sender spent its retries and handed them to the
    /// spool's retry thread, not yet settled (still in the spool: abandoned if the run ends).
    pub parked: u64,
    /// The sends started and not yet finished, by send number (0 for the first), with their
    /// events.
    in_flight: BTreeMap<u64, Vec<InFlight>>,
    started: Option<Instant>,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    /// Events in the last send, which the rate leaves out (it counts up to the last start).
    last_send_events: u64,
}

/// An event between the start of its send and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub key: String,
    pub event_type: String,
    pub event_index: usize,
}

impl Stats {
    /// Marks the start of the run (slot 0's due time); later calls keep the first.
    pub fn mark_start(&mut self, at: Instant) {
        self.started.get_or_insert(at);
    }

    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Records a send of `events` (one, or a batch) going out at `at`, `lateness` after its
    /// due time, with `skipped` slots passed over after its own, and returns its number (0 for
    /// the first). Sends are recorded in the order they start.
    pub fn record_send(
        &mut self,
        at: Instant,
        lateness: Duration,
        skipped: u64,
        events: Vec<InFlight>,
    ) -> u64 {
        let number = self.batches;
        self.batches += 1;
        self.sent += events.len() as u64;
        self.last_send_events = events.len() as u64;
        self.skipped_slots += skipped;
        self.lateness.record(lateness);
        self.first_send.get_or_insert(at);
        self.last_send = Some(at);
        self.in_flight.insert(number, events);
        self.max_in_flight_used = self.max_in_flight_used.max(self.in_flight.len());
        number
    }

    /// Records how send `number` ended. Returns false (and counts nothing) when it is no longer
    /// in flight: the run already counted it as abandoned and moved on.
    /// Every event of the send shares its outcome (the consumer stores a batch all or nothing).
    pub fn record_delivery(&mut self, number: u64, delivery: &Delivery) -> bool {
        let Some(events) = self.in_flight.remove(&number) else {
            return false;
        };
        let n = events.len() as u64;
        self.retries += u64::from(delivery.attempts.saturating_sub(1));
        self.count(n, delivery);
        true
    }

    /// With a spool: records that send `number`, its retries spent, was handed to the spool's
    /// retry thread instead of being given up. Returns false when it is no longer in flight.
    pub fn record_parked(&mut self, number: u64, attempts: u32) -> bool {
        let Some(events) = self.in_flight.remove(&number) else {
            return false;
        };
        self.retries += u64::from(attempts.saturating_sub(1));
        self.parked += events.len() as u64;
        true
    }

    /// With a spool: records how the spool's retry thread settled `n` parked events.
    pub fn record_parked_settled(&mut self, n: u64, delivery: &Delivery) {
        self.parked = self.parked.saturating_sub(n);
        self.count(n, delivery);
    }

    /// Counts `n` events of one request by how it ended.
    fn count(&mut self, n: u64, delivery: &Delivery) {
        let delivered = matches!(
            delivery.outcome,
            Outcome::Delivered | Outcome::Duplicate | Outcome::PartlyDuplicate { .. }
        );
        if let (true, Some(index)) = (delivered, delivery.endpoint) {
            if self.delivered_by_endpoint.len() <= index {
                self.delivered_by_endpoint.resize(index + 1, 0);
            }
            self.delivered_by_endpoint[index] += n;
        }
        match delivery.outcome {
            Outcome::Delivered => self.delivered += n,
            Outcome::Duplicate => {
                self.delivered += n;
                self.duplicates += n;
            }
            Outcome::PartlyDuplicate { duplicates } => {
                self.delivered += n;
                self.duplicates += (duplicates as u64).min(n);
            }
            Outcome::Unconfirmed => self.unconfirmed += n,
            Outcome::Rejected { .. } => self.rejected += n,
            Outcome::GaveUp { .. } => self.given_up += n,
            Outcome::Abandoned => self.abandoned += n,
        }
    }

    /// How many sends are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Counts every event in flight as abandoned, returning them with their send numbers in
    /// the order they started (for the log lines).
    pub fn abandon_in_flight(&mut self) -> Vec<(u64, InFlight)> {
        let events: Vec<_> = std::mem::take(&mut self.in_flight)
            .into_iter()
            .flat_map(|(number, events)| events.into_iter().map(move |e| (number, e)))
            .collect();
        self.abandoned += events.len() as u64;
        events
    }

    /// Events per second between the first and the last send: the events of every send but
    /// the last over the time from the first start to the last (with one event per send, the
    /// sends per second).
    pub fn rate(&self) -> Option<f64> {
        let span = self.last_send?.checked_duration_since(self.first_send?)?;
        let events = self.sent - self.last_send_events;
        (self.batches >= 2 && !span.is_zero()).then(|| events as f64 / span.as_secs_f64())
    }

    /// The summary of the run so far; `endpoints` names the endpoints by index.
    pub fn summary(&self, elapsed: Duration, end: End, endpoints: &[String]) -> Summary {
        let by_index = |i: usize| self.delivered_by_endpoint.get(i).copied().unwrap_or(0);
        Summary {
            delivered_by_endpoint: endpoints
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), by_index(i)))
                .collect(),
            sent: self.sent,
            batches: self.batches,
            delivered: self.delivered,
            duplicates: self.duplicates,
            unconfirmed: self.unconfirmed,
            rejected: self.rejected,
            given_up: self.given_up,
            // Parked events the run did not settle stay in the spool, as abandoned ones do.
            abandoned: self.abandoned + self.parked,
            retries: self.retries,
            skipped_slots: self.skipped_slots,
            skipped_window_full: self.skipped_window_full,
            elapsed,
            rate: self.rate(),
            lateness_p50: self.lateness.percentile(0.50),
            lateness_p99: self.lateness.percentile(0.99),
            lateness_max: self.lateness.max(),
            end,
            max_in_flight_used: self.max_in_flight_used,
            spooled: self.spooled,
            replayed: self.replayed,
            dead_lettered: self.dead_lettered,
            skipped_spool_full: self.skipped_spool_full,
        }
    }
}

/// What a run did, printed as one line at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Events sent.
    pub sent: u64,
    /// Requests sent: one per event, or one per batch.
    pub batches: u64,
    pub delivered: u64,
    pub duplicates: u64,
    /// Answered 2xx without the consumer's answer (not in `delivered`).
    pub unconfirmed: u64,
    pub rejected: u64,
    pub given_up: u64,
    pub abandoned: u64,
    pub retries: u64,
    pub skipped_slots: u64,
    /// Of `skipped_slots`, those skipped while every sender was busy.
    pub skipped_window_full: u64,
    pub elapsed: Duration,
    pub rate: Option<f64>,
    pub lateness_p50: Option<Duration>,
    pub lateness_p99: Option<Duration>,
    pub lateness_max: Option<Duration>,
    pub end: End,
    /// The most sends that were in flight at once.
    pub max_in_flight_used: usize,
    /// Of `delivered`, by endpoint (without any `user:password@`), in the configured order.
    pub delivered_by_endpoint: Vec<(String, u64)>,
    /// With a spool: events left in it at the end; none without a spool.
    pub spooled: Option<u64>,
    /// Events the spool held at start.
    pub replayed: u64,
    /// Events moved to the spool's `rejected.ndjson`.
    pub dead_lettered: u64,
    /// Slots skipped because the spool was full.
    pub skipped_spool_full: u64,
}

impl Summary {
    /// Events delivered per second of the run (`elapsed`, answers included): what a load
    /// generator got stored. `rate` is the pace sends started at, which at the end of a run
    /// with many sends in flight runs ahead of what the consumer has answered.
    pub fn throughput(&self) -> Option<f64> {
        (!self.elapsed.is_zero()).then(|| self.delivered as f64 / self.elapsed.as_secs_f64())
    }

    /// 0 when every event sent was delivered, 1 otherwise (unconfirmed, rejected, given up,
    /// abandoned, or the keys log failed).
    ///
    /// With a spool, events left in it are not failures: 3 when nothing failed (nothing
    /// unconfirmed, rejected or given up, the keys log written) but events remain spooled.
    pub fn exit_code(&self) -> u8 {
        if let Some(spooled) = self.spooled {
            let failed = self.end == End::KeysLogFailed
                || self.unconfirmed > 0
                || self.rejected > 0
                || self.given_up > 0
                || self.dead_lettered > 0;
            return match (failed, spooled) {
                (true, _) => common::exit::FAILURE,
                (false, 0) => common::exit::OK,
                (false, _) => common::exit::SPOOLED,
            };
        }
        let all_delivered = self.delivered == self.sent;
        if all_delivered && self.end != End::KeysLogFailed {
            common::exit::OK
        } else {
            common::exit::FAILURE
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} delivered={} duplicates={} rejected={} given_up={} abandoned={} retries={} \
             skipped_slots={} elapsed={:.3}s",
            self.sent,
            self.delivered,
            self.duplicates,
            self.rejected,
            self.given_up,
            self.abandoned,
            self.retries,
            self.skipped_slots,
            self.elapsed.as_secs_f64(),
        )?;
        match self.rate {
            Some(rate) => write!(f, " rate={rate:.2}/s")?,
            None => f.write_str(" rate=-")?,
        }
        for (name, value) in [
            ("p50", self.lateness_p50),
            ("p99", self.lateness_p99),
            ("max", self.lateness_max),
        ] {
            match value {
                Some(d) => write!(f, " lateness_{name}={:.3}ms", d.as_secs_f64() * 1e3)?,
                None => write!(f, " lateness_{name}=-")?,
            }
        }
        write!(
            f,
            " end={} max_in_flight_used={} skipped_window_full={} batches={}",
            self.end.as_str(),
            self.max_in_flight_used,
            self.skipped_window_full,
            self.batches
        )?;
        match self.throughput() {
            Some(throughput) => write!(f, " throughput={throughput:.2}/s")?,
            None => f.write_str(" throughput=-")?,
        }
        // A JSON object: URLs hold `:`, `,` and `=` but never a space, so the field stays one
        // word that any JSON parser reads back.
        f.write_str(" delivered_by_endpoint={")?;
        for (i, (name, delivered)) in self.delivered_by_endpoint.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let name = serde_json::Value::String(name.clone());
            write!(f, "{comma}{name}:{delivered}")?;
        }
        write!(f, "}} unconfirmed={}", self.unconfirmed)?;
        if let Some(spooled) = self.spooled {
            write!(
                f,
                " spooled={spooled} replayed={} dead_lettered={} skipped_spool_full={}",
                self.replayed, self.dead_lettered, self.skipped_spool_full
            )?;
        }
        Ok(())
    }
}

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

    /// The events of a send of `n`, keyed `k0`, `k1`, ...
    fn batch(n: usize) -> Vec<InFlight> {
        (0..n)
            .map(|i| InFlight {
                key: format!("k{i}"),
                event_type: "t".into(),
                event_index: i,
            })
            .collect()
    }

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

    #[test]
    fn the_summary_line_has_every_field_and_the_exit_code_follows_delivery() {
        let mut stats = Stats::default();
        let start = Instant::now();
        let event = || InFlight {
            key: "k".into(),
            event_type: "t".into(),
            event_index: 0,
        };
        let first = stats.record_send(start, Duration::from_micros(40), 0, vec![event()]);
        assert!(stats.record_delivery(
            first,
            &Delivery {
                outcome: Outcome::Delivered,
                attempts: 1,
                endpoint: Some(0),
            }
        ));
        let at = start + Duration::from_millis(10);
        let second = stats.record_send(at, Duration::from_micros(1_500), 2, vec![event()]);
        stats.skipped_window_full += 2;
        stats.record_delivery(
            second,
            &Delivery {
                outcome: Outcome::Duplicate,
                attempts: 3,
                endpoint: Some(1),
            },
        );
        let endpoints = [
            "http://a:1/event".to_owned(),
            "http://b:2/event?x=1,y=2".to_owned(),
            "http://c:3/event".to_owned(),
        ];
        let summary = stats.summary(Duration::from_millis(20), End::Count, &endpoints);
        assert_eq!(
            summary.to_string(),
            "sent=2 delivered=2 duplicates=1 rejected=0 given_up=0 abandoned=0 retries=2 \
             skipped_slots=2 elapsed=0.020s rate=100.00/s lateness_p50=0.040ms \
             lateness_p99=1.500ms lateness_max=1.500ms end=count max_in_flight_used=1 \
             skipped_window_full=2 batches=2 throughput=100.00/s \
             delivered_by_endpoint={\"http://a:1/event\":1,\"http://b:2/event?x=1,y=2\":1,\
             \"http://c:3/event\":0} unconfirmed=0"
        );
        // The new field reads back as JSON, whatever `:`, `,` or `=` its URLs hold.
        let line = summary.to_string();
        let field = line
            .split(' ')
            .find(|f| f.starts_with("delivered_by_endpoint="))
            .unwrap();
        let json = field.strip_prefix("delivered_by_endpoint=").unwrap();
        let counts: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(counts["http://b:2/event?x=1,y=2"], 1);
        assert_eq!(counts["http://c:3/event"], 0);
        assert_eq!(summary.exit_code(), 0);

        let at = start + Duration::from_millis(20);
        let third = stats.record_send(at, Duration::ZERO, 0, vec![event()]);
        stats.record_delivery(
            third,
            &Delivery {
                outcome: Outcome::Rejected {
                    status: 422,
                    message: "bad".into(),
                },
                attempts: 1,
                endpoint: Some(0),
            },
        );
        assert_eq!(
            stats.summary(Duration::ZERO, End::Count, &[]).exit_code(),
            1
        );
    }

    #[test]
    fn sends_in_flight_at_once_are_counted_and_each_abandoned_once() {
        let start = Instant::now();
        let mut stats = Stats::default();
        let event = |key: &str| InFlight {
            key: key.into(),
            event_type: "t".into(),
            event_index: 0,
        };
        let numbers: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .zip(0u64..)
            .map(|(key, ms)| {
                let at = start + Duration::from_millis(10 * ms);
                stats.record_send(at, Duration::ZERO, 0, vec![event(key)])
            })
            .collect();
        assert_eq!(numbers, [0, 1, 2]);
        assert_eq!((stats.in_flight(), stats.max_in_flight_used), (3, 3));
        assert_eq!(stats.rate(), Some(100.0));
        // The second ends first: sends end in any order.
        let delivered = Delivery {
            outcome: Outcome::Delivered,
            attempts: 1,
            endpoint: Some(0),
        };
        assert!(stats.record_delivery(1, &delivered));
        assert!(!stats.record_delivery(1, &delivered), "counted once");
        let abandoned: Vec<String> = stats
            .abandon_in_flight()
            .into_iter()
            .map(|(_, e)| e.key)
            .collect();
        assert_eq!(abandoned, ["a", "c"], "the rest, in the order they started");
        // An answer that comes after the run gave up waiting changes nothing.
        assert!(!stats.record_delivery(0, &delivered));
        let summary = stats.summary(Duration::ZERO, End::Stopped, &[]);
        assert_eq!(
            (summary.sent, summary.delivered, summary.abandoned),
            (3, 1, 2)
        );
        assert_eq!(summary.max_in_flight_used, 3);
        assert!(summary.to_string().ends_with(
            " max_in_flight_used=3 skipped_window_full=0 batches=3 throughput=- \
             delivered_by_endpoint={} unconfirmed=0"
        ));
        assert_eq!(summary.exit_code(), 1);
    }

    #[test]
    fn a_batch_counts_its_events_and_one_request_and_its_duplicates_per_item() {
        let start = Instant::now();
        let mut stats = Stats::default();
        let outcomes = [
            Outcome::PartlyDuplicate { duplicates: 3 },
            Outcome::Duplicate,
            Outcome::Rejected {
                status: 422,
                message: "bad".into(),
            },
        ];
        for (ms, outcome) in (0u64..).zip(outcomes) {
            let at = start + Duration::from_millis(10 * ms);
            let number = stats.record_send(at, Duration::ZERO, 0, batch(10));
            assert_eq!(number, ms, "one send number per request");
            let delivery = Delivery {
                outcome,
                attempts: 2,
                endpoint: Some(0),
            };
            assert!(stats.record_delivery(number, &delivery));
        }
        let number = stats.record_send(
            start + Duration::from_millis(30),
            Duration::ZERO,
            0,
            batch(4),
        );
        assert_eq!(stats.in_flight(), 1, "a batch is one send in flight");
        // 30 events (the last batch's 4 left out) over the 30 ms from the first start to the last.
        assert_eq!(stats.rate(), Some(1000.0));
        let abandoned = stats.abandon_in_flight();
        assert_eq!(abandoned.len(), 4);
        assert!(abandoned.iter().all(|(n, _)| *n == number));
        let summary = stats.summary(Duration::from_millis(40), End::Stopped, &[]);
        assert_eq!(
            (
                summary.sent,
                summary.batches,
                summary.delivered,
                summary.duplicates
            ),
            (34, 4, 20, 13)
        );
        assert_eq!(
            (summary.rejected, summary.abandoned, summary.retries),
            (10, 4, 3)
        );
        let line = summary.to_string();
        assert!(line.contains(" rate=1000.00/s "), "{line}");
        assert!(
            line.ends_with(" batches=4 throughput=500.00/s delivered_by_endpoint={} unconfirmed=0"),
            "{line}"
        );
    }

    #[test]
    fn unconfirmed_events_are_counted_apart_from_delivered_and_make_the_exit_code_1() {
        let mut stats = Stats::default();
        for (n, outcome) in [(1, Outcome::Delivered), (3, Outcome::Unconfirmed)] {
            let number = stats.record_send(Instant::now(), Duration::ZERO, 0, batch(n));
            let delivery = Delivery {
                outcome,
                attempts: 1,
                endpoint: Some(0),
            };
            assert!(stats.record_delivery(number, &delivery));
        }
        let summary = stats.summary(Duration::ZERO, End::Count, &["http://a/event".into()]);
        assert_eq!(
            (summary.sent, summary.delivered, summary.unconfirmed),
            (4, 1, 3)
        );
        assert_eq!(
            summary.delivered_by_endpoint,
            [("http://a/event".into(), 1)]
        );
        assert!(summary.to_string().ends_with(" unconfirmed=3"), "{summary}");
        assert_eq!(
            summary.exit_code(),
            1,
            "not every event is confirmed stored"
        );
    }

    #[test]
    fn an_empty_run_prints_dashes_and_exits_zero() {
        let summary = Stats::default().summary(Duration::ZERO, End::Stopped, &[]);
        let line = summary.to_string();
        assert!(
            line.contains("rate=- lateness_p50=- lateness_p99=- lateness_max=-"),
            "{line}"
        );
        assert!(
            line.ends_with(
                "end=signal max_in_flight_used=0 skipped_window_full=0 batches=0 throughput=- \
                 delivered_by_endpoint={} unconfirmed=0"
            ),
            "{line}"
        );
        assert_eq!(summary.exit_code(), 0);
    }
}
