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

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::sync::{lock, wait_timeout};

use crate::engine::Engine;
use crate::stats::End;
use crate::stop::Stop;

/// How often the watching thread looks at the stop request when nothing else wakes it.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// How long before a due slot, at most a period, the watcher starts another thread when every
/// sender is busy. On the loaded 2-core test machine, with answers held for 30 ms at a 2 ms
/// period (15 threads and connections started within 30 ms), new threads took 1 to 10 ms to
/// take their slot: started 1 ms ahead, 7 runs in 14 skipped a slot; 2 ms ahead, 1 in 8.
pub const SPAWN_AHEAD: Duration = Duration::from_millis(2);

/// The sender threads, as the watcher sees them. How many of them are busy, when the next slot
/// is due and why the run ended are the engine's ([`Engine::load`], [`Engine::end`]): none of
/// them is kept here.
#[derive(Debug, Default)]
struct Crew {
    threads: usize,
    /// A sender thread panicked (a bug): the run ends with that panic.
    panicked: bool,
}

struct Shared {
    engine: Arc<Engine>,
    stop: Stop,
    crew: Mutex<Crew>,
    /// The watcher has something to look at: no thread free, a thread ended.
    changed: Condvar,
}

impl Shared {
    fn crew(&self) -> MutexGuard<'_, Crew> {
        lock(&self.crew)
    }

    /// Threads not sending (waiting for their turn, or for the next slot), and when the next
    /// slot is due. A thread counts as busy from the moment its slot's send is counted until
    /// its outcome is (or until the run abandons it); a thread that panicked mid-send may leave
    /// its send counted.
    fn free(&self, crew: &Crew) -> (usize, Option<Instant>) {
        let load = self.engine.load();
        (crew.threads.saturating_sub(load.in_flight), load.next_due)
    }
}

/// Runs the sender threads until the run is over and says why it ended.
pub(crate) fn run(engine: Arc<Engine>, stop: &Stop) -> End {
    let settings = engine.settings();
    let max = settings.max_in_flight.max(1);
    let shutdown_timeout = settings.shutdown_timeout;
    let ahead = SPAWN_AHEAD.min(settings.period);
    let shared = Arc::new(Shared {
        engine,
        stop: stop.clone(),
        crew: Mutex::default(),
        changed: Condvar::new(),
    });
    if let Err(e) = spawn(&shared) {
        log::warn!(
            "cannot start a sender thread ({e}); sending from this one, one event at a time, so \
             a send that hangs at shutdown is bounded by request_timeout_seconds instead"
        );
        return send_here(&shared.engine, stop);
    }
    let mut can_grow = max > 1;
    let mut crew = shared.crew();
    loop {
        if crew.panicked {
            panic!("a sender thread panicked");
        }
        if crew.threads == 0 {
            return shared.engine.end().unwrap_or(End::Stopped);
        }
        shared.engine.end_if_duration_passed(stop);
        let now = Instant::now();
        let mut wait = STOP_CHECK;
        if let Some(requested) = stop.requested_at() {
            let left = (requested + shutdown_timeout).saturating_duration_since(now);
            if left.is_zero() {
                drop(crew);
                shared.engine.abandon_in_flight();
                // The stop ended the run here, whatever a sender thread saw before; with a
                // spool, the end of the run (count, duration) makes the stop request itself.
                return match shared.engine.spool() {
                    Some(_) => shared.engine.end().unwrap_or(End::Stopped),
                    None => End::Stopped,
                };
            }
            wait = wait.min(left);
        } else if can_grow && crew.threads < max && shared.engine.end().is_none() {
            // Every sender is busy: just before the next due time, if still none is free, one
            // more.
            if let (0, Some(due)) = shared.free(&crew) {
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
        crew = wait_timeout(&shared.changed, crew, wait);
    }
}

/// Starts a sender thread, free until it takes a slot.
fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let number = {
        let mut crew = shared.crew();
        crew.threads += 1;
        crew.threads
    };
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("sender-{number}"))
        .spawn(move || sender_thread(&thread_shared));
    match spawned {
        Ok(_detached) => Ok(()),
        Err(e) => {
            shared.crew().threads -= 1;
            Err(e)
        }
    }
}

/// Takes slots and sends their events until the run is over.
fn sender_thread(shared: &Shared) {
    // Keeps the crew's count right however the thread ends, a panic included.
    let _leaving = Leaving { shared };
    while let Ok(taken) = shared.engine.take_slot(&shared.stop) {
        {
            // Under the crew lock, so the watcher is either waiting (and woken) or has not yet
            // looked at the load (and will see this send counted).
            let crew = shared.crew();
            if shared.free(&crew).0 == 0 {
                shared.changed.notify_all();
            }
        }
        shared.engine.send(taken, &shared.stop);
    }
}

struct Leaving<'a> {
    shared: &'a Shared,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut crew = self.shared.crew();
        crew.threads -= 1;
        if std::thread::panicking() {
            crew.panicked = true;
        }
        self.shared.changed.notify_all();
    }
}

/// Without a sender thread: every slot waits for the previous send, on the calling thread.
fn send_here(engine: &Engine, stop: &Stop) -> End {
    loop {
        match engine.take_slot(stop) {
            Ok(taken) => {
                engine.send(taken, stop);
            }
            Err(end) => return end,
        }
    }
}
