//! Retention (`consumer.retention_days`) and the table's size, on a thread of their own with a
//! database session of their own (`application_name` `event_consumer retention`), outside the
//! request path.
//!
//! With a retention, events whose `received_at` is older are deleted at start and then every
//! [`prune_interval`]: in chunks of [`CHUNK_ROWS`], oldest first, each chunk its own short
//! transaction, paced after each full chunk ([`pause_after`]: at most [`MAX_ROWS_PER_SECOND`],
//! and busy a third of the time at most when chunks are slow), so a first prune of a large
//! backlog holds no long lock, builds no huge transaction, and leaves `POST /event` most of
//! its throughput (bench/RESULTS.md, "Retention").
//! Several consumers on one database prune one at a time, under an advisory lock; one that
//! finds it taken skips its turn. The size of the events table (`/metrics`'
//! `event_consumer_table_size_bytes`) is measured at start and then every [`SIZE_EVERY`], with
//! or without a retention.
//!
//! The database's outages are [`Health`](crate::db::Health)'s: while one lasts the thread
//! makes no attempt (the workers' probes end it), and a failure of its own that every write
//! would meet too (the session lost, the database read-only) starts one, with the usual log
//! lines. Other failures (a chunk past `statement_timeout`, say) are a rate-limited warning and
//! the next turn tries again.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::logging::RateLimited;
use common::stop::Stop;

use crate::db::{Database, Store, StoreError};
use crate::metrics::Metrics;

/// Rows deleted per statement. A chunk of 5000 takes PostgreSQL tens of milliseconds here, so
/// the row locks and the transaction stay small; smaller chunks only add round trips.
pub const CHUNK_ROWS: i64 = 5000;

/// Fastest pruning. A chunk takes 25 to 40 ms next to a backlog of a million rows on 2 cores;
/// paced only by [`PAUSE_PER_CHUNK`], pruning ran at 68,000 rows a second and cut
/// `POST /event` at 8 connections to 0.40x (its WAL, full pages after each checkpoint, goes
/// through the inserts' fsyncs; bench/notes/RETENTION.md). 10,000 a second is a hundred times the product's rates and works off a
/// year of one event a second (31 million rows) in under an hour.
pub const MAX_ROWS_PER_SECOND: u32 = 10_000;

/// When chunks are slow (a loaded database), the pause after one is at least this many times
/// what it took: pruning then slows down with the database.
pub const PAUSE_PER_CHUNK: u32 = 2;

/// The pause after a full chunk that took `took`.
pub fn pause_after(took: Duration) -> Duration {
    let budget = Duration::from_secs(CHUNK_ROWS as u64) / MAX_ROWS_PER_SECOND;
    budget.saturating_sub(took).max(took * PAUSE_PER_CHUNK)
}

/// Longest time between two prunes: the "every minute".
pub const PRUNE_EVERY_MAX: Duration = Duration::from_secs(60);

/// Shortest time between two prunes, for retentions of a second or less: below it a prune
/// would run back to back for nothing.
pub const PRUNE_EVERY_MIN: Duration = Duration::from_millis(100);

/// How often the table's size is measured: `pg_total_relation_size` reads the sizes of every
/// file of the table and its indexes, cheap but not for every scrape.
pub const SIZE_EVERY: Duration = Duration::from_secs(60);

/// At most one "pruned" info line per interval (the events pruned meanwhile are summed).
const PRUNED_LINE_EVERY: Duration = Duration::from_secs(60);

/// How long after expiry an event is deleted at the latest (once caught up):
/// `min(60 s, a tenth of the retention)`, at least [`PRUNE_EVERY_MIN`].
pub fn prune_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(PRUNE_EVERY_MIN, PRUNE_EVERY_MAX)
}

/// The start line's words for a retention: "30 days", "0.5 days (43200 s)".
pub fn describe(retention: Option<Duration>) -> String {
    match retention {
        None => "keeping events forever".into(),
        Some(kept) => {
            let seconds = kept.as_secs_f64();
            let days = seconds / 86_400.0;
            if days.fract() == 0.0 {
                format!("keeping events for {days} days")
            } else {
                format!("keeping events for {days:.6} days ({seconds:.1} s)")
            }
        }
    }
}

/// The running thread; [`Retention::stop`] ends it.
#[derive(Debug)]
pub struct Retention {
    stop: Stop,
    thread: Option<JoinHandle<()>>,
}

impl Retention {
    /// Logs the retention in force and starts the thread.
    pub fn start(
        retention: Option<Duration>,
        db: Arc<Database>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Retention> {
        log::info!("{}", describe(retention));
        let stop = Stop::new();
        let mut pruner = Pruner {
            retention,
            db,
            metrics,
            stop: stop.clone(),
            store: None,
            pruned_line: RateLimited::new(log::Level::Info, PRUNED_LINE_EVERY, "lines"),
            pruned_unlogged: 0,
            pruning_unlogged: Duration::ZERO,
            warning: RateLimited::new(log::Level::Warn, PRUNED_LINE_EVERY, "warnings"),
        };
        let thread = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || pruner.run())?;
        Ok(Retention {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop (a chunk under way finishes first) and waits for it up to
    /// `grace`; one still blocked in the database then is left behind: the process exit closes
    /// its session.
    pub fn stop(mut self, grace: Duration) {
        self.stop.request();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let end = Instant::now() + grace;
        while !thread.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            log::warn!("the retention thread still waits for the database; exiting without it");
        }
    }
}

struct Pruner {
    retention: Option<Duration>,
    db: Arc<Database>,
    metrics: Arc<Metrics>,
    stop: Stop,
    /// The thread's own session between turns, opened when first needed. A turn takes it and
    /// gives it back only when the turn succeeded: after any failure a new session is opened,
    /// so an advisory lock a failed turn may still hold goes with the old one.
    store: Option<Store>,
    pruned_line: RateLimited,
    /// Events pruned since the last "pruned" line, and the time those prunes took.
    pruned_unlogged: u64,
    pruning_unlogged: Duration,
    warning: RateLimited,
}

impl Pruner {
    fn run(&mut self) {
        let start = Instant::now();
        let mut next_size = start;
        let mut next_prune = start;
        loop {
            let now = Instant::now();
            if now >= next_size {
                next_size = now + SIZE_EVERY;
                self.measure();
            }
            if let Some(retention) = self.retention {
                if now >= next_prune {
                    // Counted from the start of this prune, so turns do not drift.
                    next_prune = now + prune_interval(retention);
                    self.prune(retention);
                }
            }
            let next = match self.retention {
                Some(_) => next_size.min(next_prune),
                None => next_size,
            };
            if self.stop.sleep_until(next) {
                break;
            }
        }
        log::debug!("retention thread: stopped");
    }

    /// Refreshes the size gauge (skipped during an outage: the gauge keeps its last value).
    fn measure(&mut self) {
        let result = self.session().and_then(|mut store| {
            let bytes = store.table_size()?;
            Ok((store, bytes))
        });
        match result {
            Ok((store, bytes)) => {
                self.store = Some(store);
                self.metrics.set_table_size(bytes);
            }
            Err(Skip::Outage) => {}
            Err(Skip::Failed(error)) => self.failed(&error, "measuring the events table"),
        }
    }

    /// One prune: under the advisory lock, chunks until one comes back short.
    fn prune(&mut self, retention: Duration) {
        let start = Instant::now();
        let result = self.prune_chunks(retention);
        match result {
            Ok(Some(0)) | Ok(None) | Err(Skip::Outage) => {}
            Ok(Some(n)) => {
                self.pruned_unlogged += n;
                self.pruning_unlogged += start.elapsed();
                if let Some(left_out) = self.pruned_line.allow(Instant::now()) {
                    let prunes = match left_out {
                        0 => String::new(),
                        n => format!(" over {} prunes", n + 1),
                    };
                    log::info!(
                        "pruned {} events received more than {:.1} s ago, in {:.1} s{prunes}",
                        std::mem::take(&mut self.pruned_unlogged),
                        retention.as_secs_f64(),
                        std::mem::take(&mut self.pruning_unlogged).as_secs_f64()
                    );
                }
            }
            Err(Skip::Failed(error)) => self.failed(&error, "pruning expired events"),
        }
    }

    /// The rows deleted, or None when another consumer holds the lock.
    fn prune_chunks(&mut self, retention: Duration) -> Result<Option<u64>, Skip> {
        let mut store = self.session()?;
        if !store.try_lock_pruning()? {
            log::debug!("retention: another consumer is pruning; skipping this turn");
            self.store = Some(store);
            return Ok(None);
        }
        let mut total = 0;
        let result = loop {
            let chunk_start = Instant::now();
            let deleted = match store.prune_chunk(retention, CHUNK_ROWS) {
                Ok(n) => n,
                Err(error) => break Err(error),
            };
            total += deleted;
            self.metrics.record_pruned(deleted);
            if deleted < CHUNK_ROWS as u64 || self.stop.is_requested() {
                break Ok(());
            }
            if self
                .stop
                .sleep_until(Instant::now() + pause_after(chunk_start.elapsed()))
            {
                break Ok(());
            }
        };
        result.and_then(|()| store.unlock_pruning())?;
        self.store = Some(store);
        Ok(Some(total))
    }

    /// The thread's session, taken for a turn: checked first (it sits idle between turns),
    /// opened when missing. None during an outage, which the workers' attempts end.
    fn session(&mut self) -> Result<Store, Skip> {
        if self.db.health.is_down() {
            return Err(Skip::Outage);
        }
        if let Some(mut store) = self.store.take() {
            if store.is_valid(Duration::from_secs(1)) {
                return Ok(store);
            }
        }
        self.metrics.record_db_connect();
        Ok(Store::connect_as(
            self.db.config(),
            "event_consumer retention",
        )?)
    }

    /// A failure every write would meet too (the session lost, read-only, no host) starts or
    /// continues an outage; any other is this thread's warning, and the next turn retries.
    fn failed(&mut self, error: &StoreError, doing: &str) {
        self.metrics.record_db_error();
        if error.needs_new_connection() {
            self.db.failed(error);
            return;
        }
        self.warning.log(
            Instant::now(),
            format_args!("retention: {doing} failed, trying again at the next turn: {error}"),
        );
    }
}

/// Why a turn did nothing.
enum Skip {
    /// An outage is going on: no attempt.
    Outage,
    Failed(StoreError),
}

impl From<StoreError> for Skip {
    fn from(error: StoreError) -> Skip {
        Skip::Failed(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prune_interval_is_a_tenth_of_the_retention_within_its_bounds() {
        let day = Duration::from_secs(86_400);
        assert_eq!(prune_interval(30 * day), PRUNE_EVERY_MAX);
        assert_eq!(
            prune_interval(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(
            prune_interval(Duration::from_secs(5)),
            Duration::from_millis(500)
        );
        assert_eq!(prune_interval(Duration::from_millis(200)), PRUNE_EVERY_MIN);
    }

    #[test]
    fn chunks_are_paced_to_the_rate_bound_and_slow_ones_pause_twice_their_time() {
        let budget = Duration::from_millis(500);
        assert_eq!(
            pause_after(Duration::from_millis(30)),
            budget - Duration::from_millis(30)
        );
        assert_eq!(pause_after(Duration::ZERO), budget);
        assert_eq!(
            pause_after(Duration::from_millis(400)),
            Duration::from_millis(800),
            "a slow chunk: twice its time"
        );
    }

    #[test]
    fn the_start_line_says_the_retention_in_force() {
        assert_eq!(describe(None), "keeping events forever");
        let day = Duration::from_secs(86_400);
        assert_eq!(describe(Some(30 * day)), "keeping events for 30 days");
        assert_eq!(
            describe(Some(day / 2)),
            "keeping events for 0.500000 days (43200.0 s)"
        );
    }
}
