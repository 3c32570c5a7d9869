//! The measurements of one round and what is derived from them: the ratios to pgbench, the
//! one-connection latency bound, the cost of the consumer's statement.

use std::path::Path;

use crate::inputs::{Connect, ConsumerRun, InputError, Pgbench, Wrk};

/// (pgbench clients, consumer connections), measured close in time in every round.
pub const PAIRS: [(u32, u32); 3] = [(1, 1), (8, 8), (32, 64)];

/// How many round trips of a do-nothing server the consumer's own path may add at one
/// connection to pgbench's commit (issue 11: thread hand-offs, wake-ups, parsing, one row).
pub const ROUND_TRIPS_ALLOWED: f64 = 1.5;

/// The connections of the new-connection runs (connect_rate): a handful of propagators.
pub const CONNECT_CONNS: u32 = 8;

#[derive(Debug, Clone)]
pub struct Round {
    /// pgbench with the plain single-row INSERT, one per pair.
    pub insert: Vec<Pgbench>,
    /// The consumer under wrk, one per pair.
    pub consumer: Vec<ConsumerRun>,
    /// The HTTPS consumer under the same wrk script right after, one per pair.
    pub tls: Vec<ConsumerRun>,
    /// A new TLS connection (full handshake) per request, at [`CONNECT_CONNS`].
    pub connect_tls: Connect,
    /// A new plain TCP connection per request, at [`CONNECT_CONNS`]: the reference.
    pub connect_plain: Connect,
    /// The null HTTP server under the same wrk script at 1 connection.
    pub null: Wrk,
    /// pgbench at 1 client with the consumer's statement (bench/consumer_statement.sql).
    pub statement: Pgbench,
    /// pgbench at 1 client with a plain keyed INSERT … ON CONFLICT … RETURNING.
    pub keyed: Pgbench,
}

impl Round {
    pub fn read(dir: &Path, round: usize) -> Result<Round, InputError> {
        let mut insert = Vec::new();
        let mut consumer = Vec::new();
        let mut tls = Vec::new();
        for (clients, conns) in PAIRS {
            insert.push(Pgbench::read(dir, round, &format!("insert-{clients}"))?);
            consumer.push(ConsumerRun::read(dir, round, &format!("consumer-{conns}"))?);
            tls.push(ConsumerRun::read(dir, round, &format!("tls-{conns}"))?);
        }
        Ok(Round {
            insert,
            consumer,
            tls,
            connect_tls: Connect::read(dir, round, &format!("tls-{CONNECT_CONNS}"))?,
            connect_plain: Connect::read(dir, round, &format!("plain-{CONNECT_CONNS}"))?,
            null: Wrk::read(dir, round, "null-1")?,
            statement: Pgbench::read(dir, round, "statement-1")?,
            keyed: Pgbench::read(dir, round, "keyed-1")?,
        })
    }

    /// Consumer events/s ÷ pgbench rows/s for pair `i` of [`PAIRS`].
    pub fn ratio(&self, i: usize) -> f64 {
        ratio(self.consumer[i].rate(), self.insert[i].tps)
    }

    /// HTTPS events/s ÷ plain events/s at the connections of pair `i`, measured back to back.
    pub fn tls_ratio(&self, i: usize) -> f64 {
        ratio(self.tls[i].rate(), self.consumer[i].rate())
    }

    /// New TLS connections/s ÷ new plain connections/s.
    pub fn handshake_ratio(&self) -> f64 {
        ratio(self.connect_tls.rate(), self.connect_plain.rate())
    }

    /// pgbench's 1-client p50 plus the allowed round trips of the null server, in ms.
    pub fn one_conn_bound_ms(&self) -> f64 {
        self.insert[0].latency.p50_ms + ROUND_TRIPS_ALLOWED * self.null.latency.p50_ms
    }

    /// How far the consumer's 1-connection p50 lies above the bound (≤ 0: within it), in ms.
    pub fn one_conn_excess_ms(&self) -> f64 {
        self.consumer[0].wrk.latency.p50_ms - self.one_conn_bound_ms()
    }

    /// How much more a commit of the consumer's statement costs than a plain keyed INSERT, as
    /// a fraction: the keyed rate over the statement's rate, less one.
    pub fn statement_cost(&self) -> f64 {
        ratio(self.keyed.tps, self.statement.tps) - 1.0
    }
}

pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}
