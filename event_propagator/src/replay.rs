//! The spool's retry thread: it sends what the spool held when the run began (oldest first,
//! with the original keys and bodies; the consumer answers those it already stored with 200 and
//! `Idempotent-Replayed`, so each is stored once), then the requests whose sender spent its
//! `max_retries` on them ([`Engine::park`](crate::engine)), each again and again until the
//! consumer settles it. One request at a time, in the run's shape (`batch_size` events), beside
//! the schedule: a backlog drains without taking the slots of new events. The end of the run
//! gives it the shutdown allowance, as every send in flight; what it did not settle by then
//! stays in the spool for the next run.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::sender::Outcome;
use crate::stop::Stop;

/// The retry thread of a run with a spool (none without one).
pub(crate) struct Replay {
    done: Option<mpsc::Receiver<()>>,
}

/// Starts the retry thread when the run has a spool.
pub(crate) fn start(engine: &Arc<Engine>, stop: &Stop) -> Replay {
    let Some(spool) = engine.spool() else {
        return Replay { done: None };
    };
    let replayed = engine.stats().replayed;
    if replayed > 0 {
        log::info!(
            "replaying {replayed} event(s) from spool {}, oldest first",
            spool.dir().display()
        );
    }
    let (tell, done) = mpsc::channel();
    let engine = Arc::clone(engine);
    let stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("spool-retry".into())
        .spawn(move || {
            retry(&engine, &stop);
            let _ = tell.send(());
        });
    match spawned {
        Ok(_) => Replay { done: Some(done) },
        Err(e) => {
            log::error!(
                "cannot start the spool's retry thread ({e}); spooled events wait for the next run"
            );
            Replay { done: None }
        }
    }
}

fn retry(engine: &Engine, stop: &Stop) {
    let Some(spool) = engine.spool() else { return };
    while let Some(parked) = engine.next_parked(stop) {
        let delivery = engine.deliver_spooled(spool, &parked.events, stop);
        match &delivery.outcome {
            // The shutdown allowance ran out: what is left stays in the spool.
            Outcome::Abandoned => return,
            Outcome::GaveUp { .. } => {
                engine.repark(parked);
                // A failure that retries cannot fix returns at once: not in a tight loop.
                stop.sleep_until(Instant::now() + engine.settings().backoff_max);
            }
            outcome => {
                if let Outcome::Rejected { status, message } = outcome {
                    for event in &parked.events {
                        log::error!(
                            "event {} rejected with {status}: {message}; moved to {}",
                            event.key,
                            crate::spool::DEAD_LETTER_FILE
                        );
                    }
                }
                if parked.this_run {
                    engine.record_parked_settled(parked.events.len(), &delivery);
                }
            }
        }
    }
}

impl Replay {
    /// Waits for the retry thread to end: after the run's end it has the shutdown allowance,
    /// counted from the stop request, like every other send.
    pub(crate) fn finish(self, engine: &Engine, stop: &Stop) {
        let Some(done) = self.done else { return };
        // The run ended: the retry thread has the shutdown allowance from now (or from the
        // stop), and ends sooner once nothing is left.
        stop.request();
        let deadline = stop
            .requested_at()
            .map(|at| at + engine.settings().shutdown_timeout);
        let left = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::ZERO);
        // A little beyond the allowance: a send cut at the deadline still settles its events.
        let _ = done.recv_timeout(left + Duration::from_millis(100));
    }
}
