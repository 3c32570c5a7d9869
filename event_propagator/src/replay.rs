//! Replay at start: the events a spool held when the run began are sent first, oldest first,
//! with their original keys and bodies, on a thread of their own beside the schedule (the
//! consumer answers those it already stored with 200 and `Idempotent-Replayed`, so each is
//! stored once). They go in requests of `batch_size` events, one request at a time: a backlog
//! drains without taking the slots of new events. The end of the run gives the replay the
//! shutdown allowance, as every send in flight: what it did not settle by then stays in the
//! spool.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::sender::Outcome;
use crate::stop::Stop;

/// A replay running (or none to run).
pub(crate) struct Replay {
    done: Option<mpsc::Receiver<()>>,
}

/// Starts replaying what the engine's spool held at start, if anything.
pub(crate) fn start(engine: &Arc<Engine>, stop: &Stop) -> Replay {
    let events = engine.take_replay();
    if events.is_empty() || engine.spool().is_none() {
        return Replay { done: None };
    }
    log::info!(
        "replaying {} event(s) from spool {}, oldest first",
        events.len(),
        engine
            .spool()
            .map(|s| s.dir().display().to_string())
            .unwrap_or_default()
    );
    let (tell, done) = mpsc::channel();
    let engine = Arc::clone(engine);
    let stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            replay(&engine, &events, &stop);
            let _ = tell.send(());
        });
    match spawned {
        Ok(_) => Replay { done: Some(done) },
        Err(e) => {
            log::error!(
                "cannot start the replay thread ({e}); the spooled events wait for the next run"
            );
            Replay { done: None }
        }
    }
}

fn replay(engine: &Engine, events: &[crate::spool::Spooled], stop: &Stop) {
    let Some(spool) = engine.spool() else { return };
    let per_request = engine.settings().batch_size.max(1);
    for chunk in events.chunks(per_request) {
        let delivery = engine.deliver_spooled(spool, chunk, stop);
        match &delivery.outcome {
            Outcome::Rejected { status, message } => {
                for event in chunk {
                    log::error!(
                        "replayed event {} rejected with {status}: {message}; moved to {}",
                        event.key,
                        crate::spool::DEAD_LETTER_FILE
                    );
                }
            }
            // The shutdown allowance ran out: the rest stays in the spool.
            Outcome::Abandoned => return,
            _ => {}
        }
    }
    log::info!("replay from the spool finished");
}

impl Replay {
    /// Waits for the replay to end: after the run's end it has the shutdown allowance, counted
    /// from the stop request, like every other send.
    pub(crate) fn finish(self, engine: &Engine, stop: &Stop) {
        let Some(done) = self.done else { return };
        // The run ended: the replay has the shutdown allowance from now (or from the stop).
        stop.request();
        let deadline = stop
            .requested_at()
            .map(|at| at + engine.settings().shutdown_timeout);
        let left = deadline
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::ZERO);
        // A little beyond the allowance: a send cut at the deadline still settles its events.
        let _ = done.recv_timeout(left + Duration::from_millis(100));
    }
}
