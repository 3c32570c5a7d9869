//! Counters for `GET /metrics`, in the Prometheus text format, kept in atomics (no locks on the
//! request path, no allocation).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::http::{Route, Status};

/// Upper bounds of the request-duration histogram, in seconds.
const DURATION_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the events-per-commit histogram.
const BATCH_BOUNDS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; Status::ALL.len()]; Route::ALL.len()],
    duration_buckets: [AtomicU64; DURATION_BOUNDS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    batch_buckets: [AtomicU64; BATCH_BOUNDS.len()],
    batch_count: AtomicU64,
    batch_sum: AtomicU64,
    events_stored: AtomicU64,
    duplicates: AtomicU64,
    db_errors: AtomicU64,
    db_connects: AtomicU64,
    tls_handshake_failures: AtomicU64,
    tls_plain_http: AtomicU64,
    connections_rejected: AtomicU64,
    requests_rejected_busy: AtomicU64,
    pruned_events: AtomicU64,
    /// 0 until the retention thread first measured it (a real table is never 0 bytes).
    table_size_bytes: AtomicU64,
    pub open_connections: AtomicUsize,
    pub queued: AtomicUsize,
    /// Requests read and not yet answered; shutdown waits for these.
    pub in_flight: AtomicUsize,
}

impl Metrics {
    pub fn record_request(&self, route: Route, status: Status, elapsed: Duration) {
        self.requests[route.index()][status.index()].fetch_add(1, Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(b) = DURATION_BOUNDS.iter().position(|&bound| seconds <= bound) {
            self.duration_buckets[b].fetch_add(1, Relaxed);
        }
        self.duration_count.fetch_add(1, Relaxed);
        self.duration_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// One committed batch: `created` new rows and `existing` idempotent repeats.
    pub fn record_commit(&self, size: usize, created: u64, existing: u64) {
        if let Some(b) = BATCH_BOUNDS.iter().position(|&bound| size as u64 <= bound) {
            self.batch_buckets[b].fetch_add(1, Relaxed);
        }
        self.batch_count.fetch_add(1, Relaxed);
        self.batch_sum.fetch_add(size as u64, Relaxed);
        self.events_stored.fetch_add(created, Relaxed);
        self.duplicates.fetch_add(existing, Relaxed);
    }

    pub fn record_db_error(&self) {
        self.db_errors.fetch_add(1, Relaxed);
    }

    pub fn record_db_connect(&self) {
        self.db_connects.fetch_add(1, Relaxed);
    }

    pub fn record_tls_handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Relaxed);
    }

    pub fn record_tls_plain_http(&self) {
        self.tls_plain_http.fetch_add(1, Relaxed);
    }

    pub fn record_connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Relaxed);
    }

    pub fn record_queue_full(&self) {
        self.requests_rejected_busy.fetch_add(1, Relaxed);
    }

    /// Events deleted by retention (`consumer.retention_days`).
    pub fn record_pruned(&self, n: u64) {
        self.pruned_events.fetch_add(n, Relaxed);
    }

    /// The events table's size on disk, as last measured (off the request path).
    pub fn set_table_size(&self, bytes: u64) {
        self.table_size_bytes.store(bytes, Relaxed);
    }

    pub fn events_stored(&self) -> u64 {
        self.events_stored.load(Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4). `database_outage`: whether an outage is
    /// going on, as the database layer's `Health` (which keeps the flag) says.
    pub fn render(&self, database_outage: bool) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.render_into(&mut out, database_outage);
        out
    }

    fn render_into(&self, out: &mut String, database_outage: bool) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP event_consumer_requests_total HTTP requests answered, by route and status."
        )?;
        writeln!(out, "# TYPE event_consumer_requests_total counter")?;
        for route in Route::ALL {
            for status in Status::ALL {
                let n = self.requests[route.index()][status.index()].load(Relaxed);
                if n > 0 {
                    let (route, status) = (route.label(), status.label());
                    writeln!(out, "event_consumer_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}")?;
                }
            }
        }
        writeln!(out, "# HELP event_consumer_request_duration_seconds Time from a complete request to its answer.")?;
        writeln!(
            out,
            "# TYPE event_consumer_request_duration_seconds histogram"
        )?;
        let mut cumulative = 0;
        for (b, bound) in DURATION_BOUNDS.iter().enumerate() {
            cumulative += self.duration_buckets[b].load(Relaxed);
            writeln!(
                out,
                "event_consumer_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            )?;
        }
        let count = self.duration_count.load(Relaxed);
        writeln!(
            out,
            "event_consumer_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        )?;
        let sum = self.duration_sum_micros.load(Relaxed) as f64 / 1e6;
        writeln!(out, "event_consumer_request_duration_seconds_sum {sum}")?;
        writeln!(out, "event_consumer_request_duration_seconds_count {count}")?;

        writeln!(out, "# HELP event_consumer_commit_batch_size Events written per database commit (group commit).")?;
        writeln!(out, "# TYPE event_consumer_commit_batch_size histogram")?;
        let mut cumulative = 0;
        for (b, bound) in BATCH_BOUNDS.iter().enumerate() {
            cumulative += self.batch_buckets[b].load(Relaxed);
            writeln!(
                out,
                "event_consumer_commit_batch_size_bucket{{le=\"{bound}\"}} {cumulative}"
            )?;
        }
        let count = self.batch_count.load(Relaxed);
        writeln!(
            out,
            "event_consumer_commit_batch_size_bucket{{le=\"+Inf\"}} {count}"
        )?;
        writeln!(
            out,
            "event_consumer_commit_batch_size_sum {}",
            self.batch_sum.load(Relaxed)
        )?;
        writeln!(out, "event_consumer_commit_batch_size_count {count}")?;

        let counters = [
            (
                "events_stored_total",
                "Events written to the database.",
                self.events_stored.load(Relaxed),
            ),
            (
                "events_duplicate_total",
                "Requests whose Idempotency-Key was already stored (answered 200).",
                self.duplicates.load(Relaxed),
            ),
            (
                "db_errors_total",
                "Failed database operations (connects and statements).",
                self.db_errors.load(Relaxed),
            ),
            (
                "db_connects_total",
                "Attempts to open a database connection (during an outage: one per backoff interval).",
                self.db_connects.load(Relaxed),
            ),
            (
                "tls_handshake_failures_total",
                "HTTPS connections closed because the TLS handshake failed (no or a bad client certificate, an unknown CA, nothing sent in time).",
                self.tls_handshake_failures.load(Relaxed),
            ),
            (
                "tls_plain_http_total",
                "Plain HTTP requests to the HTTPS port (answered 400 in plain text).",
                self.tls_plain_http.load(Relaxed),
            ),
            (
                "connections_rejected_total",
                "Connections refused with 503 at the max_connections bound.",
                self.connections_rejected.load(Relaxed),
            ),
            (
                "queue_full_total",
                "Requests refused with 503 because the queue was full.",
                self.requests_rejected_busy.load(Relaxed),
            ),
            (
                "pruned_events_total",
                "Events deleted because they were older than consumer.retention_days.",
                self.pruned_events.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            writeln!(out, "# HELP event_consumer_{name} {help}")?;
            writeln!(out, "# TYPE event_consumer_{name} counter")?;
            writeln!(out, "event_consumer_{name} {value}")?;
        }
        let gauges = [
            (
                "open_connections",
                "Client connections open now.",
                self.open_connections.load(Relaxed),
            ),
            (
                "queued_events",
                "Validated events waiting for a database worker.",
                self.queued.load(Relaxed),
            ),
            (
                "database_outage",
                "1 while writes to the database fail (requests are answered 503), else 0.",
                usize::from(database_outage),
            ),
        ];
        for (name, help, value) in gauges {
            writeln!(out, "# HELP event_consumer_{name} {help}")?;
            writeln!(out, "# TYPE event_consumer_{name} gauge")?;
            writeln!(out, "event_consumer_{name} {value}")?;
        }
        // Absent until first measured: a 0 would read as an empty table.
        let size = self.table_size_bytes.load(Relaxed);
        if size > 0 {
            writeln!(out, "# HELP event_consumer_table_size_bytes Bytes the events table takes on disk with its indexes and TOAST (pg_total_relation_size), measured at most once a minute.")?;
            writeln!(out, "# TYPE event_consumer_table_size_bytes gauge")?;
            writeln!(out, "event_consumer_table_size_bytes {size}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.record_request(Route::Event, Status::Created, Duration::from_micros(800));
        m.record_request(Route::Event, Status::Created, Duration::from_millis(3));
        m.record_request(Route::Other, Status::NotFound, Duration::from_micros(10));
        m.record_commit(2, 2, 0);
        let text = m.render(false);
        assert!(
            text.contains("event_consumer_requests_total{route=\"/event\",status=\"201\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("event_consumer_requests_total{route=\"other\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("event_consumer_request_duration_seconds_bucket{le=\"0.001\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("event_consumer_request_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("event_consumer_events_stored_total 2"),
            "{text}"
        );
        assert!(
            text.contains("event_consumer_commit_batch_size_bucket{le=\"2\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn pruned_events_count_up_and_the_table_size_shows_once_measured() {
        let m = Metrics::default();
        let text = m.render(false);
        assert!(
            text.contains("event_consumer_pruned_events_total 0"),
            "{text}"
        );
        assert!(
            !text.contains("event_consumer_table_size_bytes"),
            "not measured yet: {text}"
        );
        m.record_pruned(5000);
        m.record_pruned(17);
        m.set_table_size(8192 * 3);
        let text = m.render(false);
        assert!(
            text.contains("event_consumer_pruned_events_total 5017"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE event_consumer_table_size_bytes gauge\nevent_consumer_table_size_bytes 24576\n"),
            "{text}"
        );
    }

    #[test]
    fn each_route_is_counted_under_its_own_label() {
        let m = Metrics::default();
        for route in Route::ALL {
            m.record_request(route, Status::Ok, Duration::from_micros(1));
        }
        let text = m.render(false);
        for route in Route::ALL {
            let line = format!(
                "event_consumer_requests_total{{route=\"{}\",status=\"200\"}} 1",
                route.label()
            );
            assert!(text.contains(&line), "{route:?}: {text}");
        }
    }
}
