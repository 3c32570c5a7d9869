//! The engine of a run: taking slots in order (wait for the slot, pick the event, make and log
//! its key, count the send) and sending what was taken, on whichever thread calls it.
//!
//! [`Engine::take_slot`] and [`Engine::send`] are the whole interface the sender threads of
//! [`crate::window`] and the single-threaded [`crate::Propagator::tick`] use; neither of them
//! sees the schedule, the picker or the keys log. The engine also keeps the two facts both
//! need and that must not be kept twice: why the run ended ([`Engine::end`], set once by the
//! first to see it) and how busy the run is ([`Engine::load`]: the sends in flight, counted by
//! [`Stats`] from their start to their outcome, and when the next slot is due).
//!
//! A taken slot is one request: one event to `POST /event`, or with `batch_size` above 1 a batch of
//! that many events as one `POST /events` whose body is built when it is sent. Each event is a
//! [`SentEvent`] (its key, its entry in the events file, and its generation time, sent as its
//! `occurred_at`) from the moment it is picked: picked, keyed and logged in turn, so the seeded
//! choice and the keys log are the same events in the same order whatever the batch size; [`Sent`]
//! reports the same values. A batch is one send in flight and one slot: the schedule, the window
//! and the lateness count requests, the event counters count events. With several endpoints the
//! [`Sender`] chooses one per attempt; how slots are taken and how the threads share the engine do
//! not change.
//!
//! What a spool adds (spooling before the first attempt, parking what its sender gave up on
//! for the retry thread, settling in the spool) is in `spooled.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use common::calendar::rfc3339_utc;
use common::logging::RateLimited;
use common::sync::lock;

use crate::event_set::EventSet;
use crate::events::Picker;
use crate::keys_log::KeysLog;
use crate::schedule::{Schedule, Slot};
use crate::sender::{Delivery, Outcome, Post, Sender};
use crate::settings::Settings;
use crate::spool::{self, Recovered, Spool};
use crate::stats::{End, InFlight, Stats, Summary};
use crate::stop::Stop;
use crate::targets::Target;

mod spooled;

pub(crate) use spooled::Parked;

/// What every sender thread of a run shares. The settings are the run's one [`Settings`],
/// shared with the sender.
#[derive(Debug)]
pub(crate) struct Engine {
    settings: Arc<Settings>,
    events: EventSet,
    sender: Sender,
    seed: u64,
    /// The schedule and all that must follow the order of the slots, held by the thread whose
    /// turn it is, from waiting for the next slot until it has taken it.
    turn: Mutex<Turn>,
    /// Why no more slots are taken, once anyone has seen it. Outside `turn`, so the window's
    /// watcher can read it while a sender sleeps holding the turn.
    end: OnceLock<End>,
    /// Updated by every sender thread.
    live: Mutex<Live>,
    /// Where events wait until the consumer settles them, with a spool.
    spool: Option<Spool>,
    /// Requests for the spool's retry thread (`replay.rs`): what the spool held at start, then
    /// those whose sender spent its retries.
    parked: Mutex<VecDeque<Parked>>,
    /// Something was parked.
    parked_wake: Condvar,
    park_warnings: Mutex<RateLimited>,
    /// The add record of the largest event: what a slot must find room for in the spool.
    max_record_bytes: u64,
}

/// The counters and when the next slot is due, under one lock, so that a [`Load`] never pairs
/// a send just counted with the due time of the slot before it.
#[derive(Debug, Default)]
struct Live {
    stats: Stats,
    next_due: Option<Instant>,
    /// The last time the window was full: when a send ended while all `max_in_flight` were in
    /// flight. A slot due before it waited for the consumer, not for this process, even if
    /// other senders have finished since (after a stall every answer arrives at once).
    full_until: Option<Instant>,
}

/// How busy the run is, as the window's watcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// Sends started and not yet ended (nor abandoned): the run's one busy count.
    pub(crate) in_flight: usize,
    /// When the slot after the last one taken is due; none before the first.
    pub(crate) next_due: Option<Instant>,
}

#[derive(Debug)]
struct Turn {
    picker: Picker,
    keys_log: Option<KeysLog>,
    /// Created at the first slot: slot 0 is due when the run starts sending, not at setup.
    schedule: Option<Schedule>,
    skip_warnings: RateLimited,
    spool_full_warnings: RateLimited,
    /// Slots taken so far: what `--count` counts (requests, each of `batch_size` events).
    taken: u64,
}

/// A slot taken: its events picked, their keys logged, its send counted; not yet sent.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The send's number in the run (0 for the first).
    number: u64,
    /// One event, or the events of a batch, in the order they were picked.
    events: Vec<SentEvent>,
    slot: Slot,
    lateness: Duration,
}

/// One event of a send, from the moment it is picked: a batch holds several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEvent {
    pub key: String,
    /// Its position in the events file.
    pub event_index: usize,
    /// When it was generated (its slot taken): sent as its `occurred_at`, so an event
    /// delivered late does not look younger than it is.
    pub generated_at: SystemTime,
}

/// One send (one event, or one batch): what [`crate::Propagator::tick`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Its events in the order they were picked: one unless batches are sent.
    pub events: Vec<SentEvent>,
    pub slot: Slot,
    /// How long after its slot's due time the first attempt went out.
    pub lateness: Duration,
    /// How the request ended, for all of its events.
    pub delivery: Delivery,
}

impl Sent {
    /// The key of its first (with batch size 1, its only) event.
    pub fn key(&self) -> &str {
        &self.events[0].key
    }
}

impl Engine {
    /// An engine for `events` (checked, non-empty), sending through `sender`.
    pub(crate) fn new(
        settings: Arc<Settings>,
        sender: Sender,
        events: EventSet,
        keys_log: Option<KeysLog>,
        seed: u64,
        spool: Option<(Spool, Recovered)>,
    ) -> Engine {
        let turn = Turn {
            picker: Picker::new(events.len(), seed),
            keys_log,
            schedule: None,
            skip_warnings: RateLimited::new(log::Level::Warn, Duration::from_secs(1), "warnings"),
            spool_full_warnings: RateLimited::new(
                log::Level::Warn,
                Duration::from_secs(1),
                "warnings",
            ),
            taken: 0,
        };
        let max_body = (0..events.len()).map(|i| events.body(i).len()).max();
        let max_record_bytes = spool::add_len(36, max_body.unwrap_or(0)) as u64;
        let (spool, replay) = match spool {
            Some((spool, recovered)) => (Some(spool), recovered.events),
            None => (None, Vec::new()),
        };
        let mut live = Live::default();
        live.stats.replayed = replay.len() as u64;
        // Replayed in requests of the run's shape, oldest first.
        let per_request = settings.batch_size.max(1);
        let parked = replay
            .chunks(per_request)
            .map(|events| Parked {
                events: events.to_vec(),
                this_run: false,
            })
            .collect();
        Engine {
            spool,
            parked: Mutex::new(parked),
            parked_wake: Condvar::new(),
            park_warnings: Mutex::new(RateLimited::new(
                log::Level::Warn,
                Duration::from_secs(1),
                "warnings",
            )),
            max_record_bytes,
            live: Mutex::new(live),
            events,
            sender,
            seed,
            turn: Mutex::new(turn),
            end: OnceLock::new(),
            settings,
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The endpoints, in the order of the configuration.
    pub(crate) fn targets(&self) -> &[Target] {
        self.sender.targets()
    }

    /// How many events the events file holds.
    pub(crate) fn event_count(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// Why the run ended, once a [`Engine::take_slot`] has seen it.
    pub(crate) fn end(&self) -> Option<End> {
        self.end.get().copied()
    }

    /// With a spool, ends the run once `--duration` has passed, whether or not a sender is free
    /// to see it (each may be retrying a spooled event without limit): the sends in flight get
    /// the shutdown allowance from now.
    pub(crate) fn end_if_duration_passed(&self, stop: &Stop) {
        let (Some(_), Some(duration)) = (&self.spool, self.settings.duration) else {
            return;
        };
        let started = lock(&self.live).stats.started();
        if started.is_some_and(|start| start.elapsed() >= duration) {
            self.end.get_or_init(|| End::Duration);
            stop.request();
        }
    }

    /// The sends in flight and when the next slot is due, read together.
    pub(crate) fn load(&self) -> Load {
        let live = lock(&self.live);
        Load {
            in_flight: live.stats.in_flight(),
            next_due: live.next_due,
        }
    }

    /// A copy of the counters so far.
    pub(crate) fn stats(&self) -> Stats {
        lock(&self.live).stats.clone()
    }

    /// The summary so far, as if the run ended now for `end`.
    pub(crate) fn summary_at(&self, end: End) -> Summary {
        let stats = &mut lock(&self.live).stats;
        if let Some(spool) = &self.spool {
            stats.spooled = Some(spool.pending() as u64);
        }
        let elapsed = stats.started().map(|s| s.elapsed()).unwrap_or_default();
        let names: Vec<String> = self.targets().iter().map(|t| t.name.clone()).collect();
        stats.summary(elapsed, end, &names)
    }

    /// Waits for the next slot, picks its event, logs its key and counts the send; or says why
    /// the run is over. Slots are taken one at a time, in order, whichever thread takes them,
    /// so the seeded picker and the keys log follow the slots. The caller is a free sender:
    /// slots that passed while every sender was busy are skipped here.
    pub(crate) fn take_slot(&self, stop: &Stop) -> Result<Taken, End> {
        // Held through the sleep until the slot is due: the other free senders queue on it, so
        // exactly one waits for the next slot and they take the slots one by one, in order.
        let mut turn = lock(&self.turn);
        if let Some(ended) = self.end() {
            return Err(ended);
        }
        // Only the thread holding the turn sets the end, so the first reason seen is kept.
        let finish = |reason: End| -> Result<Taken, End> {
            if self.spool.is_some() {
                // Spooled sends retry without limit: the end of the run gives them the
                // shutdown allowance, as a stop request does, and leaves the rest spooled.
                stop.request();
            }
            Err(*self.end.get_or_init(|| reason))
        };
        let Turn {
            picker,
            keys_log,
            schedule,
            skip_warnings,
            spool_full_warnings,
            taken,
        } = &mut *turn;
        // --count counts slots (requests): --count 20 --batch-size 50 sends 1000 events.
        if self.settings.count.is_some_and(|n| *taken >= n) {
            return finish(End::Count);
        }
        let batch_len = self.settings.batch_size;
        let (slot, start) = loop {
            if stop.is_requested() {
                return finish(End::Stopped);
            }
            let now = Instant::now();
            let schedule = schedule.get_or_insert_with(|| Schedule::new(now, self.settings.period));
            let start = schedule.start();
            let slot = schedule.next_slot(now);
            if let Some(duration) = self.settings.duration {
                if slot.due.max(now) >= start + duration {
                    return finish(End::Duration);
                }
            }
            if stop.sleep_until(slot.due) {
                return finish(End::Stopped);
            }
            let room = self.max_record_bytes * batch_len as u64;
            match &self.spool {
                Some(spool) if !spool.has_room(room) => {
                    let skipped = {
                        let mut live = lock(&self.live);
                        live.stats.mark_start(start);
                        live.stats.skipped_spool_full += 1;
                        live.stats.skipped_spool_full
                    };
                    spool_full_warnings.log(
                        Instant::now(),
                        format_args!(
                            "spool {} is full (propagator.spool_max_bytes {}): slot skipped, \
                             no event generated, total {skipped}",
                            spool.dir().display(),
                            self.settings.spool_max_bytes
                        ),
                    );
                }
                _ => break (slot, start),
            }
        };
        let schedule = schedule.get_or_insert_with(|| Schedule::new(start, self.settings.period));

        let generated_at = SystemTime::now();
        let events: Vec<SentEvent> = (0..batch_len)
            .map(|_| SentEvent {
                event_index: picker.pick(),
                key: uuid::Uuid::new_v4().to_string(),
                generated_at,
            })
            .collect();
        *taken += 1;
        if self.spool.is_some() && self.settings.count.is_some_and(|n| *taken >= n) {
            // The last slot: with every sender retrying a spooled event without limit, no
            // thread may come back to see the count reached, so the end starts here.
            self.end.get_or_init(|| End::Count);
            stop.request();
        }
        if let Some(log) = keys_log {
            let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
            if let Err(e) = log.append_all(&keys) {
                log::error!(
                    "cannot write keys log {}: {e}; stopping before sending unlogged events",
                    log.path().display()
                );
                return finish(End::KeysLogFailed);
            }
        }
        // Built before the lock: a batch of 1000 is 1000 copies, which other senders recording
        // their outcomes need not wait for.
        let in_flight: Vec<InFlight> = events
            .iter()
            .map(|event| InFlight {
                key: event.key.clone(),
                event_type: self.events.event_type(event.event_index).to_owned(),
                event_index: event.event_index,
            })
            .collect();
        let sent_at = Instant::now();
        let lateness = sent_at.saturating_duration_since(slot.due);
        let next_due = schedule.next_due(sent_at);
        let (number, skipped_total, busy, window_was_full) = {
            let mut live = lock(&self.live);
            live.next_due = Some(next_due);
            let stats = &mut live.stats;
            stats.mark_start(start);
            let busy = stats.in_flight();
            // Full now (every other sender busy), or full at some time since the slot was due.
            let window_was_full = busy + 1 >= self.settings.max_in_flight
                || live.full_until.is_some_and(|full| full >= slot.due);
            let stats = &mut live.stats;
            let number = stats.record_send(sent_at, lateness, slot.skipped, in_flight);
            if window_was_full {
                stats.skipped_window_full += slot.skipped;
            }
            (number, stats.skipped_slots, busy, window_was_full)
        };
        if slot.skipped > 0 {
            // Whether the window was full tells an operator if a larger one would help.
            let cause = if window_was_full {
                "every sender was busy"
            } else {
                "senders to spare: this process was held up"
            };
            skip_warnings.log(
                sent_at,
                format_args!(
                    "sending {:.3}s late with {busy} other send(s) in flight, max_in_flight {} \
                     ({cause}): skipped {} slot(s), total {skipped_total}",
                    lateness.as_secs_f64(),
                    self.settings.max_in_flight,
                    slot.skipped,
                ),
            );
        }
        Ok(Taken {
            number,
            events,
            slot,
            lateness,
        })
    }

    /// Sends a taken slot's event (or batch) with its retries, on the calling thread, and
    /// records how it ended (unless the run already counted it as abandoned).
    pub(crate) fn send(&self, taken: Taken, stop: &Stop) -> Sent {
        if let Some(spool) = &self.spool {
            return self.send_spooled(spool, taken, stop);
        }
        let delivery = if self.settings.batch_size == 1 {
            let event = &taken.events[0];
            let mut body = Vec::with_capacity(self.events.body(event.event_index).len() + 48);
            self.events.write_event(
                event.event_index,
                &occurred_at(event.generated_at),
                &mut body,
            );
            self.sender.deliver(&body, &event.key, stop)
        } else {
            let body = self.batch_body(&taken.events);
            let post = Post::Batch {
                items: taken.events.len(),
                first_key: &taken.events[0].key,
            };
            self.sender.deliver_post(&body, post, stop)
        };
        self.finish(taken, delivery)
    }

    /// The JSON array of a batch: each event with its `occurred_at` and `idempotency_key`.
    fn batch_body(&self, events: &[SentEvent]) -> Vec<u8> {
        let length: usize = events
            .iter()
            .map(|e| self.events.body(e.event_index).len() + e.key.len() + 72)
            .sum();
        let mut body = Vec::with_capacity(length + 2);
        body.push(b'[');
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            self.events.write_batch_item(
                event.event_index,
                &event.key,
                &occurred_at(event.generated_at),
                &mut body,
            );
        }
        body.push(b']');
        body
    }

    /// Records how a taken slot's send ended (unless the run already counted it as abandoned).
    fn finish(&self, taken: Taken, delivery: Delivery) -> Sent {
        let counted = {
            let mut live = lock(&self.live);
            if live.stats.in_flight() >= self.settings.max_in_flight {
                live.full_until = Some(Instant::now());
            }
            live.stats.record_delivery(taken.number, &delivery)
        };
        if counted {
            if let [event] = &taken.events[..] {
                log_outcome(
                    &event.key,
                    self.events.event_type(event.event_index),
                    event.event_index,
                    &delivery,
                );
            } else {
                self.log_batch_outcome(&taken.events, &delivery);
            }
        }
        Sent {
            events: taken.events,
            slot: taken.slot,
            lateness: taken.lateness,
            delivery,
        }
    }

    /// A delivered batch is one debug line; a batch that was not delivered is one line per
    /// event (error, info when unconfirmed), as for single events, so every lost key is in the
    /// log.
    fn log_batch_outcome(&self, events: &[SentEvent], delivery: &Delivery) {
        let duplicates = match delivery.outcome {
            Outcome::Delivered => 0,
            Outcome::Duplicate => events.len(),
            Outcome::PartlyDuplicate { duplicates } => duplicates,
            _ => {
                for event in events {
                    let event_type = self.events.event_type(event.event_index);
                    log_outcome(&event.key, event_type, event.event_index, delivery);
                }
                return;
            }
        };
        log::debug!(
            "batch of {} events from {} delivered after {} attempt(s), {duplicates} already stored",
            events.len(),
            events[0].key,
            delivery.attempts
        );
    }

    /// Counts every send still in flight as abandoned and logs each with its key.
    pub(crate) fn abandon_in_flight(&self) {
        let abandoned = lock(&self.live).stats.abandon_in_flight();
        if let (Some(spool), false) = (&self.spool, abandoned.is_empty()) {
            log::warn!(
                "{} event(s) unanswered at shutdown stay in spool {} for the next run",
                abandoned.len(),
                spool.dir().display()
            );
            return;
        }
        for (_, event) in abandoned {
            log_abandoned(&event.key, &event.event_type, event.event_index);
        }
    }
}

/// An event's `occurred_at`: RFC 3339 in UTC with milliseconds, finer than any schedule.
fn occurred_at(generated_at: SystemTime) -> String {
    rfc3339_utc(generated_at, 3)
}

fn log_outcome(key: &str, event_type: &str, event_index: usize, delivery: &Delivery) {
    let attempts = delivery.attempts;
    match &delivery.outcome {
        Outcome::Delivered | Outcome::Duplicate | Outcome::PartlyDuplicate { .. } => {
            log::debug!("event {key} ({event_type}) delivered after {attempts} attempt(s)")
        }
        // Info, not error: the run's one warning says what came back and why it counts so;
        // the line is here for the key (which the keys-log check reports missing).
        Outcome::Unconfirmed => log::info!(
            "event {key} ({event_type}, entry {event_index}) unconfirmed: a 2xx without the \
             consumer's answer after {attempts} attempt(s)"
        ),
        Outcome::Rejected { status, message } => log::error!(
            "event {key} ({event_type}, entry {event_index}) rejected with {status}: {message}"
        ),
        Outcome::GaveUp { reason } => log::error!(
            "event {key} ({event_type}, entry {event_index}) given up after {attempts} \
             attempt(s): {reason}"
        ),
        Outcome::Abandoned => log_abandoned(key, event_type, event_index),
    }
}

fn log_abandoned(key: &str, event_type: &str, event_index: usize) {
    log::error!(
        "event {key} ({event_type}, entry {event_index}) abandoned at shutdown without an \
         answer: the consumer may or may not have it"
    );
}

#[cfg(test)]
mod tests;
