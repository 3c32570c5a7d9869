//! The built binary: how fast SIGTERM ends a run, and when sender threads are started.

use std::time::{Duration, Instant};

use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn sigterm_ends_an_endless_run_promptly_with_a_summary() {
    let dir = TempDir::running_alone();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let child = propagator(&dir, &["--period", "0.01"]).spawn().unwrap();
    assert!(receiver.wait_for(5, LIMIT), "it never started sending");
    sigterm(&child);
    let signalled = Instant::now();
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        took < Duration::from_millis(500),
        "exited {took:?} after SIGTERM"
    );
    let summary = summary_line(&stderr);
    assert!(
        summary.contains("end=signal") && summary.contains("given_up=0"),
        "{summary}"
    );
    let sent: usize = summary
        .split("sent=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert_eq!(
        sent,
        receiver.requests().len(),
        "every send reached the receiver"
    );
}

#[test]
fn sender_threads_are_started_only_when_every_one_is_busy_at_a_due_slot() {
    let dir = TempDir::running_alone();
    // Answers well within the period: one thread sends everything, whatever the window.
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "  max_in_flight: 32\n");
    let (threads, stderr) = most_sender_threads(&dir, &["--period", "0.02", "--count", "25"]);
    assert_eq!(threads, 1, "{stderr}");
    assert!(
        summary_line(&stderr).contains("max_in_flight_used=1"),
        "{stderr}"
    );

    // Answers 15 periods long: the window grows to what is needed, and not past its limit.
    let receiver = Receiver::start(|_, _| Reply::status(201).after(Duration::from_millis(30)));
    write_config(&dir, &receiver.url(), "  max_in_flight: 32\n");
    let (threads, stderr) = most_sender_threads(&dir, &["--period", "0.002", "--count", "100"]);
    assert!((8..=32).contains(&threads), "{threads} threads; {stderr}");
    let (threads, stderr) = most_sender_threads(
        &dir,
        &["--period", "0.002", "--count", "40", "--max-in-flight", "4"],
    );
    assert!((1..=4).contains(&threads), "{threads} threads; {stderr}");
    assert!(
        summary_line(&stderr).contains("max_in_flight_used=4"),
        "{stderr}"
    );
}

/// The sender threads of a running propagator: named `sender-<n>` (see window.rs). Names, not
/// threads, are counted: ureq resolves the host of each new connection on a short-lived thread
/// of its own, which inherits its sender's name.
fn sender_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with("sender-"))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Runs the binary with `args` and samples its sender threads until it exits; the most seen.
fn most_sender_threads(dir: &TempDir, args: &[&str]) -> (usize, String) {
    let child = propagator(dir, args).spawn().unwrap();
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut most = 0;
        // Ends when the process is gone (its /proc entry with it), bounded in any case.
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline && std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            most = most.max(sender_threads(pid));
            std::thread::sleep(Duration::from_millis(2));
        }
        most
    });
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    (sampler.join().unwrap(), stderr)
}
