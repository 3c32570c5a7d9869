//! What a spool adds to the engine: a taken slot's events are spooled (durable, their keys
//! logged) before the first attempt and settled in the spool by the answer; a request whose
//! sender spent its retries is parked for the spool's retry thread (`replay.rs`), which takes
//! it with [`Engine::next_parked`] and retries it until it is settled or the run ends.

use std::time::{Duration, Instant};

use common::sync::{lock, wait_timeout};

use super::{occurred_at, Engine, Sent, Taken};
use crate::sender::{Delivery, Outcome, Post};
use crate::spool::{AddError, Spool, Spooled};
use crate::stats::End;
use crate::stop::Stop;

/// One request's events waiting in the spool for its retry thread.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) events: Vec<Spooled>,
    /// Generated in this run (counted in `sent`), rather than found in the spool at start.
    pub(crate) this_run: bool,
}

impl Engine {
    /// Spools a taken slot's events (durable, and their keys logged) before the first attempt,
    /// then sends them as [`Engine::send`] does and settles them.
    pub(super) fn send_spooled(&self, spool: &Spool, taken: Taken, stop: &Stop) -> Sent {
        // The body is kept as sent, its `occurred_at` included, so a replay in a later run
        // carries the event's own generation time.
        let events: Vec<Spooled> = taken
            .events
            .iter()
            .map(|event| {
                let mut body = Vec::with_capacity(self.events.body(event.event_index).len() + 48);
                self.events.write_event(
                    event.event_index,
                    &occurred_at(event.generated_at),
                    &mut body,
                );
                Spooled {
                    key: event.key.clone(),
                    generated_at_micros: Spooled::micros(event.generated_at),
                    body,
                }
            })
            .collect();
        match spool.add(&events) {
            // Logged by the spool (rate-limited): sent without it.
            Ok(()) | Err(AddError::Io(_)) => {}
            Err(AddError::KeysLog(_)) => {
                self.end.get_or_init(|| End::KeysLogFailed);
                stop.request();
                let unsent = Delivery {
                    outcome: Outcome::Abandoned,
                    attempts: 0,
                    endpoint: None,
                };
                return self.finish(taken, unsent);
            }
        }
        let delivery = self.deliver_spooled(spool, &events, stop);
        if let Outcome::GaveUp { reason } = &delivery.outcome {
            return self.park(taken, events, reason, delivery.clone());
        }
        self.finish(taken, delivery)
    }

    /// Hands a request whose sender spent its retries to the spool's retry thread, which
    /// retries it until it is settled or the run ends: not given up, and the sender is free
    /// for the next slot, so events go on being generated (and spooled) through an outage.
    fn park(&self, taken: Taken, events: Vec<Spooled>, reason: &str, delivery: Delivery) -> Sent {
        let counted = {
            let mut live = lock(&self.live);
            if live.stats.in_flight() >= self.settings.max_in_flight {
                live.full_until = Some(Instant::now());
            }
            live.stats.record_parked(taken.number, delivery.attempts)
        };
        if counted {
            lock(&self.park_warnings).log(
                Instant::now(),
                format_args!(
                    "{} from {} still failing after {} attempt(s) ({reason}): kept in the spool, \
                     retried in the background",
                    match events.len() {
                        1 => "event".to_owned(),
                        n => format!("batch of {n} events"),
                    },
                    events[0].key,
                    delivery.attempts
                ),
            );
            lock(&self.parked).push_back(Parked {
                events,
                this_run: true,
            });
            self.parked_wake.notify_all();
        }
        Sent {
            events: taken.events,
            slot: taken.slot,
            lateness: taken.lateness,
            delivery,
        }
    }

    /// The next parked request, oldest first, waiting for one; none once a stop is requested
    /// and nothing is parked nor in flight (a send in flight may still park its events), or
    /// once the shutdown allowance has run out.
    pub(crate) fn next_parked(&self, stop: &Stop) -> Option<Parked> {
        let mut parked = lock(&self.parked);
        loop {
            if let Some(requested) = stop.requested_at() {
                if requested.elapsed() >= self.settings.shutdown_timeout {
                    return None;
                }
            }
            if let Some(next) = parked.pop_front() {
                return Some(next);
            }
            if stop.is_requested() && self.load().in_flight == 0 {
                return None;
            }
            // The stop request does not notify this condition variable: look again soon.
            parked = wait_timeout(&self.parked_wake, parked, Duration::from_millis(100));
        }
    }

    /// Puts a parked request that failed again behind the others.
    pub(crate) fn repark(&self, parked: Parked) {
        lock(&self.parked).push_back(parked);
    }

    /// Counts how the retry thread settled a request parked by this run.
    pub(crate) fn record_parked_settled(&self, events: usize, delivery: &Delivery) {
        lock(&self.live)
            .stats
            .record_parked_settled(events as u64, delivery);
    }

    /// Sends spooled events (one, or a batch) with their retries, and settles them in the
    /// spool: delivered ones leave it, rejected ones move to `rejected.ndjson`, the rest stay.
    pub(crate) fn deliver_spooled(
        &self,
        spool: &Spool,
        events: &[Spooled],
        stop: &Stop,
    ) -> Delivery {
        let delivery = match events {
            [event] => self.sender.deliver(&event.body, &event.key, stop),
            _ => {
                let mut body = vec![b'['];
                for (i, event) in events.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    crate::event_set::write_batch_item(&event.body, &event.key, &mut body);
                }
                body.push(b']');
                let post = Post::Batch {
                    items: events.len(),
                    first_key: &events[0].key,
                };
                self.sender.deliver_post(&body, post, stop)
            }
        };
        match &delivery.outcome {
            Outcome::Delivered | Outcome::Duplicate | Outcome::PartlyDuplicate { .. } => {
                spool.settle(events, None)
            }
            Outcome::Rejected { status, message } => {
                spool.settle(events, Some((*status, message)));
                lock(&self.live).stats.dead_lettered += events.len() as u64;
            }
            // Not settled: the events stay in the spool.
            _ => {}
        }
        delivery
    }

    /// The spool, if the run has one.
    pub(crate) fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }
}
