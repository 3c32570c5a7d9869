//! How late a sleep to each slot of a 1 ms grid ends, for the ways the last stretch before a
//! deadline can be waited out: what `Stop::sleep_until` does (a spin), the yielding loop it did
//! before, and a plain `std::thread::sleep`. Run idle and beside busy loops, interleaved:
//!
//! ```text
//! cargo run --release -p common --example sleep_precision -- [BUSY_LOOPS [ROUNDS]]
//! ```
//!
//! BUSY_LOOPS threads spin for the whole run (two on a 2-core machine is a neighbour
//! taking every core); each round measures every way once, in A B C C B A order.

use std::time::{Duration, Instant};

use common::stop::{Stop, SPIN_MARGIN};

const SLOTS: u32 = 2_000;
const PERIOD: Duration = Duration::from_millis(1);

/// One way to sleep until a deadline.
type Way = fn(&Stop, Instant);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let busy: usize = args.first().map_or(0, |a| a.parse().expect("BUSY_LOOPS"));
    let rounds: usize = args.get(1).map_or(3, |a| a.parse().expect("ROUNDS"));
    // Threads of this process, so they end with it however it ends.
    for _ in 0..busy {
        std::thread::spawn(|| loop {
            std::hint::spin_loop();
        });
    }
    println!("{busy} busy loops, {SLOTS} slots of {PERIOD:?} per measure");
    let ways: [(&str, Way); 3] = [
        ("Stop::sleep_until", |stop, due| {
            stop.sleep_until(due);
        }),
        ("wait, then yield", yielding),
        ("thread::sleep", |_, due| {
            std::thread::sleep(due.saturating_duration_since(Instant::now()))
        }),
    ];
    for round in 1..=rounds {
        let order: Vec<usize> = (0..ways.len()).chain((0..ways.len()).rev()).collect();
        for i in order {
            let (name, way) = ways[i];
            let (p50, p99) = lateness(way);
            println!("round {round} {name:<18} p50 {p50:>10.3?} p99 {p99:>10.3?}");
        }
    }
}

/// The sleep before the spin was made one: a timed wait, then `yield_now` until the deadline.
fn yielding(_: &Stop, due: Instant) {
    if let Some(coarse) = due.checked_sub(SPIN_MARGIN) {
        std::thread::sleep(coarse.saturating_duration_since(Instant::now()));
    }
    while Instant::now() < due {
        std::thread::yield_now();
    }
}

fn lateness(way: Way) -> (Duration, Duration) {
    let stop = Stop::new();
    let start = Instant::now();
    let mut late: Vec<Duration> = (1..=SLOTS)
        .map(|k| {
            let due = start + PERIOD * k;
            way(&stop, due);
            Instant::now() - due
        })
        .collect();
    late.sort();
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
