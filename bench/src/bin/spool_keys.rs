//! `spool_keys DIR...`: prints the key of every event still in each propagator spool, one a
//! line, without taking the spool's lock or changing it: `make chaos`'s spool mode counts an
//! event generated but not stored as kept, not lost, when its key is here.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: spool_keys DIR... (propagator spool directories)");
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    for dir in &dirs {
        let events = match event_propagator::spool::read_pending(Path::new(dir)) {
            Ok(events) => events,
            Err(e) => {
                eprintln!("spool_keys: {dir}: {e}");
                return ExitCode::from(1);
            }
        };
        for event in events {
            if writeln!(out, "{}", event.key).is_err() {
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
