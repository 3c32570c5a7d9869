//! The summary of a run: the one line printed at the end (`key=value` fields operators and
//! scripts parse) and the exit code it implies.

use std::fmt;
use std::time::Duration;

use super::End;

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
