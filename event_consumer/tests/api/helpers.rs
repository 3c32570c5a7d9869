//! Test helpers: a consumer on port 0 against a fresh database, a raw HTTP client, and the
//! built binary as a child process for signal, memory and systemd tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Config;
use event_consumer::Running;
use test_support::TestDb;

pub const GOOD_EVENT: &str = r#"{"event_type":"user.login","event_payload":"id=42"}"#;

/// A consumer running in this process against its own database.
pub struct TestApp {
    pub db: TestDb,
    pub addr: SocketAddr,
    running: Option<Running>,
}

impl TestApp {
    pub fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {})
    }

    pub fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::new();
        let config = test_config(&db, adjust);
        let running = event_consumer::start(&config).expect("consumer starts");
        let addr = running.addr();
        TestApp {
            db,
            addr,
            running: Some(running),
        }
    }

    pub fn post(&self, body: &str, headers: &[(&str, &str)]) -> RawResponse {
        post_event(self.addr, body, headers)
    }

    pub fn get(&self, path: &str) -> RawResponse {
        get_closing(self.addr, path)
    }

    /// One sample of `GET /metrics` by its name and labels as the consumer writes them, e.g.
    /// `event_consumer_requests_total{route="/event",status="413"}`; None if it is not there.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        metric_in(&self.get("/metrics").body, sample)
    }
}

/// One sample of a Prometheus text body (see [`TestApp::metric`]).
pub fn metric_in(body: &str, sample: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        line.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `condition` every 10 ms until it holds, and fails the test naming `what` once `limit`
/// has passed. For things the server does in its own time (accepting, noticing a close):
/// a fixed sleep is too short on a loaded machine and wasted on an idle one.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
        }
    }
}

pub fn test_config(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        database: db.database_config(),
        ..Config::default()
    };
    config.database.connect_timeout_seconds = 2.0;
    config.consumer.host = "127.0.0.1".into();
    config.consumer.port = 0;
    config.consumer.workers = 2;
    config.consumer.shutdown_timeout_seconds = 5.0;
    adjust(&mut config);
    config
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

pub fn post_event(addr: SocketAddr, body: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    send(addr, request.as_bytes())
}

/// `GET path` on a connection of its own, closed after the answer.
pub fn get_closing(addr: SocketAddr, path: &str) -> RawResponse {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Sends raw bytes on a new connection and reads one response.
pub fn send(addr: SocketAddr, raw: &[u8]) -> RawResponse {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    read_response(&mut BufReader::new(stream)).expect("a response")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

/// Reads one response (status line, headers, Content-Length body); None if the server closed
/// the connection before answering.
pub fn read_response(reader: &mut impl BufRead) -> Option<RawResponse> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The built `event_consumer` binary running as a child process with a config file.
pub struct ConsumerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// How to start a [`ConsumerProcess`] beyond the defaults.
#[derive(Debug, Default)]
pub struct ProcessOptions<'a> {
    /// Lines appended under `database:` (indented by the caller).
    pub database_yaml: &'a str,
    /// Instead of the test database's host, user and port (hosts and ports may be lists:
    /// `127.0.0.1,127.0.0.1` and `5432,5433`).
    pub db_host: Option<&'a str>,
    pub db_user: Option<&'a str>,
    pub db_port: Option<u16>,
    /// Several ports, one per host of `db_host` (`5432,5433`); wins over `db_port`.
    pub db_ports: Option<&'a str>,
    /// Lines appended under `consumer:` (indented by the caller).
    pub consumer_yaml: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    /// Starts the binary through `sh -c 'ulimit -n N; exec …'` (same pid).
    pub max_open_files: Option<u32>,
    /// Another build of the consumer than this test's (the release binary, for memory).
    pub binary: Option<&'a str>,
    /// A cgroup's `cgroup.procs`: the binary starts inside that cgroup (same pid), so everything
    /// it allocates is charged there from its first page.
    pub cgroup_procs: Option<&'a std::path::Path>,
}

impl ConsumerProcess {
    /// `extra_yaml` is appended under the `consumer:` section (indented by the caller).
    pub fn start(db: &TestDb, extra_consumer_yaml: &str, env: &[(&str, &str)]) -> ConsumerProcess {
        ConsumerProcess::start_with(
            db,
            ProcessOptions {
                consumer_yaml: extra_consumer_yaml,
                env,
                ..ProcessOptions::default()
            },
        )
    }

    pub fn start_with(db: &TestDb, options: ProcessOptions<'_>) -> ConsumerProcess {
        let port = test_support::free_port();
        let dir = std::env::temp_dir().join(format!(
            "consumer-test-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() + port as u128
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let c = db.database_config();
        let yaml = format!(
            "database:\n  host: {}\n  port: {}\n  user: {}\n  password: \"{}\"\n  dbname: {}\n  connect_timeout_seconds: 2\n{}\
             consumer:\n  host: 127.0.0.1\n  port: {port}\n  workers: 2\n{}",
            options.db_host.unwrap_or(&c.host),
            options
                .db_ports
                .map(str::to_owned)
                .or(options.db_port.map(|p| p.to_string()))
                .unwrap_or_else(|| c.port.to_string()),
            options.db_user.unwrap_or(&c.user),
            c.password.expose(),
            c.dbname,
            options.database_yaml,
            options.consumer_yaml,
        );
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        let binary = options
            .binary
            .unwrap_or(env!("CARGO_BIN_EXE_event_consumer"));
        let mut prelude = String::new();
        if let Some(n) = options.max_open_files {
            prelude.push_str(&format!("ulimit -n {n} && "));
        }
        if let Some(procs) = options.cgroup_procs {
            prelude.push_str(&format!("echo $$ > '{}' && ", procs.display()));
        }
        let mut command = if prelude.is_empty() {
            Command::new(binary)
        } else {
            let mut sh = Command::new("sh");
            sh.args(["-c", &format!("{prelude}exec \"$0\" \"$@\""), binary]);
            sh
        };
        command
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .current_dir(&dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in options.env {
            command.env(k, v);
        }
        let child = command.spawn().expect("the consumer binary starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let process = ConsumerProcess { child, addr, dir };
        process.wait_until_listening();
        process
    }

    fn wait_until_listening(&self) {
        wait_until(
            &format!("the consumer binary listening on {}", self.addr),
            Duration::from_secs(20),
            || TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok(),
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit (bounded) and returns the exit code and everything logged.
    pub fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut log = String::new();
                if let Some(mut stderr) = self.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut log);
                }
                return (status.code(), log);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the consumer did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Peak resident memory of a process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM, then the exit code must be 0; everything the consumer logged.
pub fn stop_and_log(consumer: ConsumerProcess) -> String {
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    log
}

/// Ends every session the consumer holds on database `name` (`admin` is another session), its
/// workers' and its retention thread's: its next write has to reconnect.
pub fn end_consumer_sessions(admin: &mut postgres::Client, name: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name LIKE 'event_consumer%'",
            &[&name],
        )
        .unwrap();
}

/// Sessions of the consumer's workers and readiness probe open on database `name` now (the
/// retention thread's has another `application_name`).
pub fn consumer_sessions(admin: &mut postgres::Client, name: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'event_consumer'",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Makes every new session on database `name` read-only (`on`), what a failover to a standby
/// or `default_transaction_read_only` gives, or writable again. Sessions open already keep
/// what they had: [`end_consumer_sessions`] ends the consumer's.
pub fn set_read_only(admin: &mut postgres::Client, name: &str, on: bool) {
    let change = match on {
        true => "SET default_transaction_read_only = on",
        false => "RESET default_transaction_read_only",
    };
    admin
        .batch_execute(&format!("ALTER DATABASE {name} {change}"))
        .unwrap();
}

/// `GET /readyz` `times` times, one after the other: each answer's status and how long it took.
pub fn readyz_timed(addr: SocketAddr, times: usize) -> Vec<(u16, Duration)> {
    (0..times)
        .map(|_| {
            let asked = Instant::now();
            let status = get_closing(addr, "/readyz").status;
            (status, asked.elapsed())
        })
        .collect()
}

/// A consumer whose requests are due after 2.5 s (`statement_timeout_seconds: 2` + 0.5 s).
pub fn with_statement_timeout_2_s(db: &TestDb) -> ConsumerProcess {
    ConsumerProcess::start_with(
        db,
        ProcessOptions {
            database_yaml: "  statement_timeout_seconds: 2\n",
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    )
}
