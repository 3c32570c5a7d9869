//! Stopping the propagator: SIGTERM or SIGINT request the run's [`Stop`] (`common::stop`, whose
//! sleeps end as soon as it is made). SIGHUP does not stop the propagator: it is logged and
//! ignored.
//!
//! The signal handlers are `common::signals`' (the consumer's too, with the same exit codes);
//! a small thread of this module waits for what they leave, logs it and makes the request.

use std::io;
use std::time::Duration;

use common::signals::Signals;
pub use common::stop::{Stop, SPIN_MARGIN};

/// How long the signal thread waits for a stop signal before it looks at the SIGHUP flag
/// again: a SIGHUP's log line may come this late, nothing else waits for it.
const HANGUP_POLL: Duration = Duration::from_millis(50);

/// Makes the stop signals of `signals` (registered with the forced exit armed by the first
/// one, so a second exits at once with `common::exit::FAILURE`) request `stop`, on a
/// thread of their own. SIGHUP (a closed terminal, `systemctl reload`) is logged and
/// otherwise ignored: the propagator has nothing to reload, and a run should not end
/// because its terminal closed.
pub fn on_signals(stop: &Stop, signals: Signals) -> io::Result<()> {
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let stops = signals.stops_within(HANGUP_POLL);
            // Looked at after the wait, so a SIGHUP just before a stop is logged before it.
            if signals.take_hangup() {
                log::info!(
                    "SIGHUP received: ignored (nothing to reload; SIGTERM or SIGINT stops \
                         the propagator)"
                );
            }
            if stops > 0 && !stop.is_requested() {
                log::info!(
                    "stop signal received: no new sends; those in flight may finish \
                         (a second signal exits at once)"
                );
                stop.request();
            }
        })?;
    Ok(())
}
