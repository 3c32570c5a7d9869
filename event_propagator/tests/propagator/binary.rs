//! The built binary: exit codes, messages, signals, `.env`.

use std::time::{Duration, Instant};

use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_counted_run_exits_0_and_prints_one_summary_line() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "5", "--seed", "11"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(receiver.requests().len(), 5);
    let summary = summary_line(&stderr);
    for field in [
        "sent=5 ",
        "delivered=5 ",
        "duplicates=0 ",
        "rejected=0 ",
        "given_up=0 ",
        "retries=0 ",
        "skipped_slots=0 ",
        "elapsed=",
        "lateness_p50=",
        "lateness_p99=",
        "lateness_max=",
        "end=count",
    ] {
        assert!(summary.contains(field), "{field} missing from {summary}");
    }
    assert_eq!(stderr.matches("summary: ").count(), 1);
    let start = stderr
        .lines()
        .find(|l| l.contains("sending to"))
        .expect("a start line");
    assert!(
        start.contains(&receiver.url()) && start.contains("seed 11") && start.contains("3 events"),
        "{start}"
    );
}

#[test]
fn flags_override_the_config_file() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    // The file points at a port nothing listens on and a missing events file.
    dir.write(
        "config.yaml",
        "propagator:\n  endpoint: http://127.0.0.1:9/nowhere\n  events_file: missing.json\n",
    );
    dir.write("other.json", EVENTS_JSON);
    let (code, stderr) = run_binary(
        &dir,
        &[
            "--endpoint",
            &receiver.url(),
            "--events-file",
            "other.json",
            "--period",
            "0.01",
            "--count",
            "3",
        ],
        LIMIT,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(receiver.requests().len(), 3);
}

#[test]
fn a_rejected_event_makes_a_counted_run_exit_1_with_the_consumers_message() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| {
        Reply::status(422).body(r#"{"error": "payload smells funny", "field": "event_payload"}"#)
    });
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "2"], LIMIT);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(receiver.requests().len(), 2, "not retried");
    assert!(stderr.contains("payload smells funny"), "{stderr}");
    assert!(summary_line(&stderr).contains("rejected=2"), "{stderr}");
}

#[test]
fn an_event_given_up_makes_the_exit_code_1() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| Reply::status(503));
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(receiver.requests().len(), 4, "1 attempt + max_retries 3");
    assert!(summary_line(&stderr).contains("given_up=1"), "{stderr}");
    assert!(stderr.contains("given up after 4 attempt(s)"), "{stderr}");
}

#[test]
fn a_bad_events_file_exits_2_naming_the_file_and_the_entry() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    dir.write(
        "events.json",
        r#"[{"event_type": "ok", "event_payload": ""}, {"event_type": "x", "event_payload": 1}]"#,
    );
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    let line = stderr.trim();
    assert!(!line.contains('\n'), "one line: {stderr}");
    assert!(line.starts_with("event_propagator: "), "{line}");
    assert!(
        line.contains("events.json") && line.contains("index 1"),
        "{line}"
    );
    assert!(receiver.requests().is_empty());

    for (contents, needle) in [("[]", "empty"), ("{not json", "JSON")] {
        dir.write("events.json", contents);
        let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("events.json") && stderr.contains(needle),
            "{stderr}"
        );
    }
    std::fs::remove_file(dir.path().join("events.json")).unwrap();
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read events file events.json"),
        "{stderr}"
    );
}

#[test]
fn events_and_config_files_that_are_not_regular_files_exit_2_naming_the_file() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("fifo"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    // A FIFO without a writer used to block the propagator in open(), deaf to SIGTERM.
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["--events-file", "fifo"],
            "cannot read events file fifo: is a named pipe",
            "a FIFO of events",
        ),
        (
            &["--events-file", "/dev/zero"],
            "cannot read events file /dev/zero: is a character device",
            "an endless device of events",
        ),
        (
            &["--config", "fifo"],
            "cannot read config file fifo: is a named pipe",
            "a FIFO as config",
        ),
        (
            &["--config", "/dev/zero"],
            "cannot read config file /dev/zero: is a character device",
            "an endless device as config",
        ),
    ];
    for (args, needle, reason) in cases {
        let mut args = args.to_vec();
        args.extend(["--count", "1"]);
        let (code, stderr) = run_binary(&dir, &args, LIMIT);
        assert_eq!(code, 2, "{reason}: {stderr}");
        assert!(
            stderr.starts_with(&format!("event_propagator: {needle}")),
            "{reason}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{reason}: {stderr}");
    }
    assert!(receiver.requests().is_empty());
}

#[test]
fn an_events_file_starting_with_a_byte_order_mark_is_accepted() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    dir.write("events.json", &format!("\u{feff}{EVENTS_JSON}"));
    let (code, stderr) = run_binary(&dir, &["--count", "2"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(receiver.requests().len(), 2);
}

#[test]
fn bad_flags_and_a_bad_config_exit_2_with_one_line() {
    let dir = TempDir::new();
    write_config(&dir, "http://127.0.0.1:9/event", "");
    for (args, needle) in [
        (&["--period", "fast"][..], "--period"),
        (&["--count", "0"][..], "--count"),
        (&["--max-in-flight", "0"][..], "--max-in-flight"),
        (&["--max-in-flight", "many"][..], "--max-in-flight"),
        (&["--frobnicate"][..], "--frobnicate"),
        (&["--config", "nope.yaml"][..], "nope.yaml"),
    ] {
        let (code, stderr) = run_binary(&dir, args, LIMIT);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("event_propagator: "),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    dir.write("config.yaml", "propagator:\n  period_seconds: -1\n");
    let (code, stderr) = run_binary(&dir, &[], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("propagator.period_seconds"), "{stderr}");
    dir.write("config.yaml", "propagator:\n  max_in_flight: 0\n");
    let (code, stderr) = run_binary(&dir, &[], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("config.yaml") && stderr.contains("propagator.max_in_flight"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_exit_0() {
    let dir = TempDir::new();
    let output = propagator(&dir, &["--help"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--config",
        "--endpoint",
        "--period",
        "--events-file",
        "--max-in-flight",
        "--count",
        "--duration",
        "--seed",
        "--keys-log",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let output = propagator(&dir, &["--version"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8(output.stdout)
        .unwrap()
        .starts_with("event_propagator 0."));
}

#[test]
fn sigterm_abandons_a_hanging_send_within_the_shutdown_timeout() {
    let dir = TempDir::new();
    let receiver = hanging_receiver(&dir);
    // One send at a time: the first hangs, so it is the only one (several: see window.rs).
    let child = propagator(&dir, &["--max-in-flight", "1"]).spawn().unwrap();
    assert!(receiver.wait_for(1, LIMIT), "it never sent");
    sigterm(&child);
    let signalled = Instant::now();
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // How soon after the allowance it exits depends on the machine; that it did not wait for
    // the 60 s request timeout does not.
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM with a 0.5 s shutdown timeout"
    );
    assert!(summary_line(&stderr).contains("abandoned=1"), "{stderr}");
    assert!(stderr.contains("abandoned at shutdown"), "{stderr}");
}

#[test]
fn sighup_is_logged_and_ignored_and_sigterm_still_ends_the_run_with_exit_0() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let child = propagator(&dir, &["--period", "0.05"]).spawn().unwrap();
    // The first send comes after the signal handlers are installed.
    assert!(receiver.wait_for(1, LIMIT), "it never sent");
    signal(&child, "HUP");
    let before = receiver.requests().len();
    assert!(
        receiver.wait_for(before + 3, LIMIT),
        "no sends after SIGHUP: it stopped"
    );
    sigterm(&child);
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("SIGHUP received: ignored").count(),
        1,
        "one line per SIGHUP:\n{stderr}"
    );
    let summary = summary_line(&stderr);
    assert!(summary.contains("end=signal"), "{summary}");
}

#[test]
fn the_token_is_sent_but_never_logged_even_at_trace_level() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, n| match n {
        0 => Reply::status(503),
        1 => Reply::status(401),
        _ => Reply::status(201),
    });
    write_config(&dir, &receiver.url(), "  auth_token: Tok-3f9a77c1\n");
    let child = propagator(&dir, &["--count", "3"])
        .env("LOG_LEVEL", "trace")
        .spawn()
        .unwrap();
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    assert_eq!(status.code(), Some(1), "the 401 is a rejection: {stderr}");
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer Tok-3f9a77c1")));
    assert!(!stderr.contains("3f9a77c1"), "token in the log:\n{stderr}");
}

#[test]
fn dotenv_in_the_working_directory_fills_config_variables_and_the_environment_wins() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, "${TEST_PROPAGATOR_URL}", "");
    dir.write(
        ".env",
        &format!("TEST_PROPAGATOR_URL={}\nLOG_LEVEL=debug\n", receiver.url()),
    );
    // LOG_LEVEL=info is set by the helper, so the .env value must not apply.
    let (code, stderr) = run_binary(&dir, &["--count", "2"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(receiver.requests().len(), 2);
    assert!(
        !stderr.contains("DEBUG"),
        "the real LOG_LEVEL lost to .env:\n{stderr}"
    );

    dir.write(".env", "this is not a dotenv line\n");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("event_propagator: .env"), "{stderr}");
}

#[test]
fn a_malformed_dotenv_line_exits_2_naming_the_file_and_line_but_no_part_of_the_secret() {
    let dir = TempDir::new();
    write_config(&dir, "http://127.0.0.1:9/event", "");
    dir.write(".env", "LOG_LEVEL=info\nDB_PASSWORD=\"Hunter2Secret\n");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("event_propagator: .env:2: DB_PASSWORD: unterminated quote"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for part in ["Hunter", "Secret", "2Sec", "nter2", "\"H"] {
        assert!(
            !stderr.contains(part),
            "`{part}` of the secret in: {stderr}"
        );
    }
}

#[test]
fn the_keys_log_flag_records_every_event() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "7", "--keys-log", "keys.txt"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    let logged = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    let mut logged: Vec<&str> = logged.lines().collect();
    // Several sends may be in flight (period 0), so they may arrive in another order.
    let mut sent: Vec<String> = receiver.requests().iter().map(|r| r.key()).collect();
    logged.sort_unstable();
    sent.sort_unstable();
    assert_eq!(logged.len(), 7);
    assert_eq!(logged, sent);
}

#[test]
fn sigterm_abandons_every_hanging_send_and_logs_each_key() {
    let dir = TempDir::new();
    let receiver = hanging_receiver(&dir);
    let child = propagator(
        &dir,
        &[
            "--period",
            "0.01",
            "--max-in-flight",
            "4",
            "--keys-log",
            "keys.txt",
        ],
    )
    .spawn()
    .unwrap();
    assert!(receiver.wait_for(4, LIMIT), "the window never filled");
    // With every sender waiting for an answer, nothing more goes out. Not a synchronisation:
    // it gives a fifth send, that must not exist, time to show up.
    std::thread::sleep(Duration::from_millis(100));
    sigterm(&child);
    let signalled = Instant::now();
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // How soon after the allowance it exits depends on the machine; that it did not wait for
    // the 60 s request timeout does not.
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM with a 0.5 s shutdown timeout"
    );
    let summary = summary_line(&stderr);
    for field in ["sent=4 ", "delivered=0 ", "abandoned=4 ", "end=signal"] {
        assert!(summary.contains(field), "{field} missing from {summary}");
    }
    let keys: Vec<String> = receiver.requests().iter().map(|r| r.key()).collect();
    assert_eq!(keys.len(), 4, "never more than the window");
    for key in &keys {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(key.as_str()) && l.contains("abandoned at shutdown")),
            "{key} not logged as abandoned:\n{stderr}"
        );
    }
    let mut logged: Vec<String> = std::fs::read_to_string(dir.path().join("keys.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut keys = keys;
    logged.sort_unstable();
    keys.sort_unstable();
    assert_eq!(logged, keys);
}

/// A receiver that holds every answer for 30 s, and a config in `dir` pointing at it whose
/// request timeout outlasts that and whose shutdown allowance is 0.5 s.
fn hanging_receiver(dir: &TempDir) -> Receiver {
    let receiver = Receiver::start(|_, _| Reply::status(201).after(Duration::from_secs(30)));
    write_config(
        dir,
        &receiver.url(),
        "  request_timeout_seconds: 60\n  shutdown_timeout_seconds: 0.5\n",
    );
    receiver
}
