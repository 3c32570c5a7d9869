//! The pipeline's deadline thread: it answers 503 in the database's place to every request that
//! has waited too long, queued or in a batch the database does not answer (the batches and their
//! deadlines are kept in [`crate::deadlines`]).

use std::sync::atomic::Ordering;
use std::time::Instant;

use common::sync::lock;

use super::{Job, Pipeline};
use crate::db::Outcome;
use crate::deadlines::DEADLINE_TICK;
use crate::routes;

impl Pipeline {
    /// The deadline thread: until the queue is closed, answers 503 to every request that has waited
    /// [`Database::answer_within`](crate::db::Database::answer_within) for the database, queued or
    /// in a batch the database does not answer (see `deadlines.rs`). A batch the database has not
    /// answered for that long starts an outage: a server that is alive cancels it at
    /// `statement_timeout`.
    pub fn run_deadlines(&self) {
        let limit = self.db.answer_within();
        while !lock(&self.state).closed {
            std::thread::sleep(DEADLINE_TICK);
            let now = Instant::now();
            let expired = self.in_flight.expire(now);
            if expired.stalled > 0 {
                self.db.no_answer();
            }
            if !expired.writers.is_empty() {
                let response = routes::answer_to(&Outcome::Unavailable);
                let answered = expired
                    .writers
                    .iter()
                    .filter(|w| w.abandon(&response))
                    .count();
                self.db.health.refused(answered);
            }
            // Queued in arrival order: the expired ones are at the front.
            let queued: Vec<Job> = {
                let mut state = lock(&self.state);
                let n = state
                    .jobs
                    .iter()
                    .take_while(|job| {
                        now.saturating_duration_since(job.answer.waiting_since()) >= limit
                    })
                    .count();
                if n > 0 {
                    self.metrics
                        .queued
                        .store(state.jobs.len() - n, Ordering::Relaxed);
                }
                state.jobs.drain(..n).collect()
            };
            if !queued.is_empty() {
                self.db.health.refused(queued.len());
                for job in queued {
                    job.answer.send_outcome(&Outcome::Unavailable);
                }
            }
        }
    }
}
