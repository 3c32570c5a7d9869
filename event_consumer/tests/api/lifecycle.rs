//! The binary: exit codes, signals, systemd readiness.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::TestDb;

use crate::helpers::{connect, read_response, wait_until, ConsumerProcess, GOOD_EVENT};

pub(crate) fn run_with_config(yaml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "consumer-cfg-{}-{}",
        std::process::id(),
        yaml.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("config-{}.yaml", fastrand_suffix()));
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_event_consumer"));
    command.arg("--config").arg(&path).current_dir(&dir);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn configuration_errors_exit_2_with_one_line_naming_the_problem() {
    let cases = [
        ("consumer:\n  prot: 8080\n", "prot", "a typo'd key"),
        (
            "database:\n  password: \"${SURELY_UNSET_VAR_FOR_TEST}\"\n",
            "SURELY_UNSET_VAR_FOR_TEST",
            "a missing variable",
        ),
        (
            "consumer:\n  port: eighty\n",
            "consumer.port",
            "a non-number port",
        ),
    ];
    for (yaml, needle, reason) in cases {
        let (code, stderr) = run_with_config(yaml, &[]);
        assert_eq!(code, Some(2), "{reason}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{reason}: one line: {stderr}"
        );
        assert!(stderr.contains(needle), "{reason}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_event_consumer"))
        .args(["--config", "/nonexistent/config.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.yaml"));
}

#[test]
fn an_open_file_limit_that_leaves_no_connection_exits_1_saying_what_it_needs() {
    let dir = std::env::temp_dir().join(format!("consumer-nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "consumer:\n  host: 127.0.0.1\n  port: 0\n  workers: 2\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 30 && exec \"$0\" --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_event_consumer"))
        .arg(&config)
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // 2 workers, the probe, retention, one host: 5 sessions of 4 descriptors, and 16 more.
    assert_eq!(
        stderr.trim_end(),
        "event_consumer: cannot start: the open-file limit (ulimit -n, LimitNOFILE) is 30, and \
         the database sessions and the listener need 36 of it: raise it to at least 37"
    );
}

#[test]
fn help_and_version_exit_0_and_bad_flags_exit_2() {
    let bin = env!("CARGO_BIN_EXE_event_consumer");
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("event_consumer "));
    let out = Command::new(bin).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin).args(["--port", "http"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sigterm_during_a_burst_exits_0_and_every_201_has_its_row() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[]);
    let addr = consumer.addr;
    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let acknowledged = Arc::clone(&acknowledged);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    else {
                        return;
                    };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let raw = format!(
                        "POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{GOOD_EVENT}",
                        GOOD_EVENT.len()
                    );
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    // Keep-alive: many requests per connection until the server closes it.
                    loop {
                        if stream.write_all(raw.as_bytes()).is_err() {
                            break;
                        }
                        match read_response(&mut reader) {
                            Some(r) if r.status == 201 => acknowledged
                                .lock()
                                .unwrap()
                                .push(r.json()["id"].as_i64().unwrap()),
                            Some(r) => assert_eq!(r.status, 503, "only 201 or 503 while stopping"),
                            None => break,
                        }
                    }
                }
            })
        })
        .collect();
    // SIGTERM in the middle of the burst: once some answers have come, not after a guess.
    wait_until(
        "the first 20 answers of the burst",
        Duration::from_secs(20),
        || acknowledged.lock().unwrap().len() >= 20,
    );
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(code, Some(0), "{log}");
    let ids = acknowledged.lock().unwrap().clone();
    assert!(ids.len() > 10, "the burst got only {} answers", ids.len());
    let stored: i64 = db
        .client()
        .query_one("SELECT count(*) FROM events WHERE id = ANY($1)", &[&ids])
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize,
        ids.len(),
        "every acknowledged event is stored"
    );
    println!(
        "{} events acknowledged during the burst, all stored",
        ids.len()
    );
}

#[test]
fn the_consumer_tells_systemd_it_is_ready_and_stopping() {
    let db = TestDb::new();
    let dir = std::env::temp_dir().join(format!("notify-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let consumer = ConsumerProcess::start(&db, "", &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("READY=1 on the notify socket within 20 s of the start");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    // Ready means listening: a request succeeds now.
    let mut stream = connect(consumer.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream)).unwrap().status,
        200
    );
    consumer.signal("TERM");
    let n = socket
        .recv(&mut buf)
        .expect("STOPPING=1 on the notify socket within 20 s of SIGTERM");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let (code, _) = consumer.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_env_line_exits_2_naming_the_file_and_line_but_not_the_value() {
    let dir = std::env::temp_dir().join(format!("consumer-env-{}", fastrand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "LOG_LEVEL=info\nDB_PASSWORD=\"Hunter2Secret\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_event_consumer"))
        .current_dir(&dir)
        .env_remove("DB_PASSWORD")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(".env:2"),
        "names the file and line: {stderr}"
    );
    for part in ["Hunter", "Secret", "2Sec", "r2S"] {
        assert!(
            !stderr.contains(part),
            "shows {part:?} of the secret: {stderr}"
        );
    }
}

#[test]
fn without_a_config_file_it_runs_on_the_defaults_and_an_explicit_missing_config_exits_2() {
    // An empty working directory: no config.yaml, no .env.
    let dir = std::env::temp_dir().join(format!("consumer-noconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = test_support::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_event_consumer"))
        .args(["--port", &port.to_string()])
        .current_dir(&dir)
        .env("LOG_LEVEL", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let process = ConsumerProcess {
        child,
        addr,
        dir: dir.clone(),
    };
    wait_until(
        "the consumer listening on its --port",
        Duration::from_secs(20),
        || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    );
    let health = crate::helpers::send(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.status, 200);
    process.signal("TERM");
    let (code, log) = process.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("no --config and no config.yaml in the working directory"),
        "{log}"
    );

    // The process's directory goes with it; a fresh empty one for the second run.
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_event_consumer"))
        .args(["--config", "missing.yaml", "--port", &port.to_string()])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.yaml"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
