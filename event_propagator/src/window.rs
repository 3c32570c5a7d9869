//! The window of sends in flight: up to `max_in_flight` sender threads that take turns at the
//! schedule, and the calling thread watching over them.
//!
//! A free sender thread waits for its turn, then for the next slot; it takes the slot (picks
//! the event, logs its key), hands the turn on and sends the event itself with its retries,
//! over the one shared [`crate::sender::Sender`] (one `ureq::Agent`, one pool of keep-alive
//! connections). No event changes threads between its slot and its send, so a send starts as
//! close to its due time as with a single sender. A slot waits only when every sender is busy;
//! the sender that frees first then takes it, late, and skips the slots that passed meanwhile,
//! exactly as a single sender does after an overrun (with `max_in_flight: 1` that is all there
//! is). Sends that overlap end, and are stored, in any order.
//!
//! Threads are started lazily by the watching (calling) thread: the first at once, another
//! only when a slot is (about to be) due and every existing one is busy sending, up to
//! `max_in_flight`. "About to be": starting a thread (and its first connection) can take
//! milliseconds on a loaded machine, so the watcher starts it up to [`SPAWN_AHEAD`] (at most a
//! period) before the due time, and the slot need not wait for it. A run whose sends take less
//! than their period minus that keeps one thread, however large the window: one per second
//! with sends of a few milliseconds never starts a second. The watcher also ends the run: when
//! every thread has seen the end (count, duration, stop), or, after a stop request,
//! `shutdown_timeout` after it, abandoning the sends still unanswered.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::stats::End;
use crate::stop::Stop;
use crate::Core;

/// How often the watching thread looks at the stop request when nothing else wakes it.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// How long before a due slot, at most a period, the watcher starts another thread when every
/// sender is busy. On the loaded 2-core test machine, with answers held for 30 ms at a 2 ms
/// period (15 threads and connections started within 30 ms), new threads took 1 to 10 ms to
/// take their slot: started 1 ms ahead, 7 runs in 14 skipped a slot; 2 ms ahead, 1 in 8.
pub const SPAWN_AHEAD: Duration = Duration::from_millis(2);

/// The sender threads, as the watcher sees them.
#[derive(Debug, Default)]
struct Crew {
    threads: usize,
    /// Threads not sending: waiting for their turn, or for the next slot.
    free: usize,
    /// When the slot after the last one taken is due.
    next_due: Option<Instant>,
    /// Why the first thread that ended saw the run end.
    end: Option<End>,
    /// A sender thread panicked (a bug): the run ends with that panic.
    panicked: bool,
}

struct Shared {
    core: Arc<Core>,
    stop: Stop,
    crew: Mutex<Crew>,
    /// The watcher has something to look at: no thread free, a thread ended.
    changed: Condvar,
}

impl Shared {
    fn crew(&self) -> MutexGuard<'_, Crew> {
        self.crew.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the sender threads until the run is over and says why it ended.
pub(crate) fn run(core: Arc<Core>, stop: &Stop) -> End {
    let max = core.options.max_in_flight.max(1);
    let shutdown_timeout = core.options.shutdown_timeout;
    let ahead = SPAWN_AHEAD.min(core.options.period);
    let shared = Arc::new(Shared {
        core,
        stop: stop.clone(),
        crew: Mutex::default(),
        changed: Condvar::new(),
    });
    if let Err(e) = spawn(&shared) {
        log::warn!(
            "cannot start a sender thread ({e}); sending from this one, one event at a time, so \
             a send that hangs at shutdown is bounded by request_timeout_seconds instead"
        );
        return send_here(&shared.core, stop);
    }
    let mut can_grow = max > 1;
    let mut crew = shared.crew();
    loop {
        if crew.panicked {
            panic!("a sender thread panicked");
        }
        if crew.threads == 0 {
            return crew.end.unwrap_or(End::Stopped);
        }
        let now = Instant::now();
        let mut wait = STOP_CHECK;
        if let Some(requested) = stop.requested_at() {
            let left = (requested + shutdown_timeout).saturating_duration_since(now);
            if left.is_zero() {
                drop(crew);
                shared.core.abandon_in_flight();
                return End::Stopped;
            }
            wait = wait.min(left);
        } else if can_grow && crew.free == 0 && crew.end.is_none() && crew.threads < max {
            // Every sender is busy: just before the next due time, if still none is free, one
            // more.
            if let Some(due) = crew.next_due {
                let due = due.checked_sub(ahead).unwrap_or(due);
                if now >= due {
                    drop(crew);
                    if let Err(e) = spawn(&shared) {
                        can_grow = false;
                        log::warn!(
                            "cannot start another sender thread ({e}); continuing with the ones \
                             running"
                        );
                    }
                    crew = shared.crew();
                    continue;
                }
                wait = wait.min(due - now);
            }
        }
        crew = shared
            .changed
            .wait_timeout(crew, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Starts a sender thread, counted as free.
fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let number = {
        let mut crew = shared.crew();
        crew.threads += 1;
        crew.free += 1;
        crew.threads
    };
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("sender-{number}"))
        .spawn(move || sender_thread(&thread_shared));
    match spawned {
        Ok(_detached) => Ok(()),
        Err(e) => {
            let mut crew = shared.crew();
            crew.threads -= 1;
            crew.free -= 1;
            Err(e)
        }
    }
}

/// Takes slots and sends their events until the run is over.
fn sender_thread(shared: &Shared) {
    // Keeps the crew's counts right however the thread ends, a panic included.
    let mut guard = Leaving {
        shared,
        free: true,
        end: None,
    };
    loop {
        let taken = match shared.core.take_slot(&shared.stop) {
            Ok(taken) => taken,
            Err(end) => {
                guard.end = Some(end);
                return;
            }
        };
        {
            let mut crew = shared.crew();
            crew.free -= 1;
            guard.free = false;
            crew.next_due = Some(
                crew.next_due
                    .map_or(taken.next_due, |d| d.max(taken.next_due)),
            );
            if crew.free == 0 {
                shared.changed.notify_all();
            }
        }
        shared.core.send(taken, &shared.stop);
        shared.crew().free += 1;
        guard.free = true;
    }
}

struct Leaving<'a> {
    shared: &'a Shared,
    free: bool,
    end: Option<End>,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut crew = self.shared.crew();
        crew.threads -= 1;
        if self.free {
            crew.free -= 1;
        }
        if let Some(end) = self.end {
            crew.end.get_or_insert(end);
        }
        if std::thread::panicking() {
            crew.panicked = true;
        }
        self.shared.changed.notify_all();
    }
}

/// Without a sender thread: every slot waits for the previous send, on the calling thread.
fn send_here(core: &Core, stop: &Stop) -> End {
    loop {
        match core.take_slot(stop) {
            Ok(taken) => {
                core.send(taken, stop);
            }
            Err(end) => return end,
        }
    }
}
