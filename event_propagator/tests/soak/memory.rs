//! Memory: a large events file costs about its own size, not several times it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::helpers::*;

/// Events in the generated file, and the characters of each payload: about 125 MB in all.
const EVENTS: usize = 600_000;
const PAYLOAD_CHARS: usize = 150;

/// Most peak memory allowed, as a multiple of the file's size. Reading the text whole, then
/// the events, then their bodies peaked at 2.9 times this file; parsing as it reads into one
/// buffer of bodies, at 1.1 times (the rest is the process itself and the types).
const MAX_PEAK_PER_FILE_BYTE: f64 = 1.5;

/// Debug builds parse the file in about 15 s on the 2-core test machine.
const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn a_125_mb_events_file_costs_at_most_one_and_a_half_times_its_size_in_peak_memory() {
    let dir = TempDir::running_alone();
    // Holds its answer, so the process stays up with everything loaded while it is measured.
    let receiver = Receiver::start(|_, _| Reply::status(201).after(Duration::from_secs(60)));
    write_config(&dir, &receiver.url(), "");
    let file_bytes = write_large_events_file(&dir);
    let mut child = propagator(&dir, &["--count", "1"]).spawn().unwrap();
    assert!(receiver.wait_for(1, LIMIT), "it never sent");
    let peak = peak_resident_bytes(child.id());
    child.kill().unwrap();
    let (_, stderr) = wait_with_timeout(child, LIMIT);
    assert!(
        stderr.contains(&format!("{EVENTS} events from events.json")),
        "{stderr}"
    );
    let ratio = peak as f64 / file_bytes as f64;
    println!("events file {file_bytes} bytes, peak resident {peak} bytes: {ratio:.2}x");
    assert!(
        ratio <= MAX_PEAK_PER_FILE_BYTE,
        "peak resident memory {peak} bytes is {ratio:.2} times the {file_bytes}-byte events \
         file (at most {MAX_PEAK_PER_FILE_BYTE})"
    );
}

/// Writes `events.json` with [`EVENTS`] events of 50 types, pretty-printed with escapes and
/// non-ASCII text as a hand-kept file would be, and returns its size.
fn write_large_events_file(dir: &TempDir) -> u64 {
    // A fixed linear congruential generator: the same file every run.
    let mut state: u64 = 20_261_202;
    let mut next_char = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        b"abcdefghijklmnopqrstuvwxyz0123456789 "[(state >> 33) as usize % 37] as char
    };
    let mut text = String::with_capacity(EVENTS * (PAYLOAD_CHARS + 70));
    text.push_str("[\n");
    for i in 0..EVENTS {
        let payload: String = (0..PAYLOAD_CHARS).map(|_| next_char()).collect();
        let comma = if i + 1 < EVENTS { "," } else { "" };
        let _ = writeln!(
            text,
            r#"  {{"event_type": "type_{}", "event_payload": "{payload} \"q\" é"}}{comma}"#,
            i % 50
        );
    }
    text.push_str("]\n");
    let path = dir.path().join("events.json");
    std::fs::write(&path, &text).unwrap();
    std::fs::metadata(&path).unwrap().len()
}

/// The peak resident set size of process `pid` so far (`VmHWM`), in bytes.
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line}"));
    kib * 1024
}
