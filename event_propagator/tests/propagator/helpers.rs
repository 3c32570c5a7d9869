//! A recording HTTP/1.1 receiver on 127.0.0.1, temporary directories, settings and a runner for
//! the built binary. Shared by the `propagator` and `soak` test binaries; each uses a part.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use event_propagator::Settings;
use test_support::TestDb;

/// Three events, so tests can tell them apart by type.
pub const EVENTS_JSON: &str = r#"[
  {"event_type": "alpha", "event_payload": "{\"n\": 1}"},
  {"event_type": "beta", "event_payload": "two"},
  {"event_type": "gamma", "event_payload": "Température ✓"}
]"#;

/// A directory removed on drop. It also holds a share of the machine: tests that measure
/// timing (the soak binary's) take it whole with [`TempDir::running_alone`], so the other
/// tests of their binary (which run on parallel threads) do not disturb the measurement.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _machine: Machine,
}

#[derive(Debug)]
#[allow(dead_code)] // held for its Drop
enum Machine {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

/// Serialises the timed tests against every other test of their binary: each test holds it
/// shared through its [`TempDir`], a timed one holds it alone.
static TIMED_TESTS_RUN_ALONE: RwLock<()> = RwLock::new(());

impl TempDir {
    pub fn new() -> TempDir {
        let guard = TIMED_TESTS_RUN_ALONE
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        TempDir::with(Machine::Shared(guard))
    }

    /// A directory for a test that measures timing: it waits for the other tests of this
    /// binary to finish, and none starts until it is dropped.
    pub fn running_alone() -> TempDir {
        let guard = TIMED_TESTS_RUN_ALONE
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        TempDir::with(Machine::Alone(guard))
    }

    fn with(machine: Machine) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "event-propagator-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir {
            path,
            _machine: machine,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Settings for an in-process run against `endpoint`: fast retries, short timeouts, one send in
/// flight at a time (the single-sender behaviour most tests look at; tests of the window set
/// `max_in_flight` themselves).
pub fn settings(dir: &TempDir, endpoint: &str) -> Settings {
    let config = common::Config::default();
    let mut settings = Settings::from_config(&config.propagator);
    settings.endpoints = vec![endpoint.to_owned()];
    settings.events_file = dir.write("events.json", EVENTS_JSON);
    settings.period = Duration::ZERO;
    // Caps every backoff ceiling (the first is `BACKOFF_INITIAL`, 0.1 s): retries within 50 ms.
    settings.backoff_max = Duration::from_millis(50);
    settings.request_timeout = Duration::from_secs(5);
    settings.shutdown_timeout = Duration::from_secs(2);
    settings.max_retries = 5;
    settings.max_in_flight = 1;
    settings.seed = Some(1);
    settings
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to make the client time out).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        let body = if status >= 400 {
            format!(r#"{{"error": "test receiver says {status}"}}"#)
        } else {
            r#"{"id": 1}"#.into()
        };
        Reply {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.into();
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which TCP connection it came on (0 for the first accepted).
    pub connection: usize,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn key(&self) -> String {
        self.header("idempotency-key")
            .expect("every request carries an Idempotency-Key")
            .to_owned()
    }

    pub fn event_type(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.decoded_body()).unwrap();
        json["event_type"].as_str().unwrap().to_owned()
    }

    /// The body as sent before compression: gunzipped when `Content-Encoding: gzip`.
    pub fn decoded_body(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some("gzip") => {
                let mut decoded = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut decoded)
                    .expect("a gzip body that gunzips");
                decoded
            }
            None => self.body.clone(),
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
    }

    /// The items of a batch (`POST /events`): the JSON array of the body.
    pub fn items(&self) -> Vec<serde_json::Value> {
        serde_json::from_slice(&self.decoded_body()).expect("a JSON array of items")
    }

    /// The `idempotency_key` of every item of a batch, in order.
    pub fn item_keys(&self) -> Vec<String> {
        self.items()
            .iter()
            .map(|item| {
                item["idempotency_key"]
                    .as_str()
                    .expect("every item carries an idempotency_key")
                    .to_owned()
            })
            .collect()
    }
}

impl Reply {
    /// The consumer's answer to a batch: one result per item, `duplicate` for the items whose
    /// index `duplicate` says, `created` for the rest; 200 when every item is a duplicate.
    pub fn batch(request: &Request, duplicate: impl Fn(usize) -> bool) -> Reply {
        let items = request.items().len();
        let results: Vec<String> = (0..items)
            .map(|i| {
                let status = if duplicate(i) { "duplicate" } else { "created" };
                format!(
                    r#"{{"id": {}, "received_at": "2026-12-02T02:00:00.000000Z", "status": "{status}"}}"#,
                    i + 1
                )
            })
            .collect();
        let all_duplicates = items > 0 && (0..items).all(&duplicate);
        Reply::status(if all_duplicates { 200 } else { 201 })
            .body(&format!(r#"{{"results": [{}]}}"#, results.join(", ")))
    }
}

type Responder = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Request>>,
    /// Notified with every request recorded.
    arrived: Condvar,
    connections: AtomicUsize,
    /// Requests received and not yet answered, and the most there were at once.
    open: AtomicUsize,
    max_open: AtomicUsize,
    stopping: AtomicBool,
    failed_handshakes: AtomicUsize,
    client_certificates: AtomicUsize,
    responder: Box<Responder>,
}

impl Shared {
    fn new(responder: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Shared {
        Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            failed_handshakes: AtomicUsize::new(0),
            client_certificates: AtomicUsize::new(0),
            responder: Box::new(responder),
        }
    }
}

/// A minimal HTTP/1.1 server that records every request and answers through a closure given
/// the request and its number (0 for the first). Keep-alive unless the client says close.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    scheme: &'static str,
}

/// A TLS server configuration for [`Receiver::https`]: `server`'s certificate and key, and with
/// `client_ca` client certificates signed by that CA required.
pub fn https_config(
    server: &test_support::CertFiles,
    client_ca: Option<&Path>,
) -> Arc<rustls::ServerConfig> {
    let identity = common::tls::Identity::load("server", &server.cert, "key", &server.key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let roots = common::tls::read_root_store("client ca", ca).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                common::tls::provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let private_key = identity.private_key();
    Arc::new(
        builder
            .with_single_cert(identity.certs, private_key)
            .unwrap(),
    )
}

impl Receiver {
    pub fn start(responder: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), responder)
    }

    /// Always answers 201.
    pub fn accepting() -> Receiver {
        Receiver::start(|_, _| Reply::status(201))
    }

    pub fn on(
        listener: TcpListener,
        responder: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::new(responder));
        let accept_shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let connection = accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&accept_shared);
                std::thread::spawn(move || serve(stream, connection, &shared));
            }
        });
        Receiver {
            addr,
            shared,
            scheme: "http",
        }
    }

    /// A receiver behind TLS (see [`https_config`]); its [`Receiver::url`] is `https://`.
    pub fn https(
        config: Arc<rustls::ServerConfig>,
        responder: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::new(responder));
        let accept_shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let connection = accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&accept_shared);
                let config = Arc::clone(&config);
                std::thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    stream.set_nodelay(true).unwrap();
                    let mut tls = rustls::StreamOwned::new(
                        rustls::ServerConnection::new(config).unwrap(),
                        stream,
                    );
                    // The handshake first, so a refused one is counted and never served.
                    while tls.conn.is_handshaking() {
                        if tls.conn.complete_io(&mut tls.sock).is_err() {
                            shared.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    if tls.conn.peer_certificates().is_some() {
                        shared.client_certificates.fetch_add(1, Ordering::SeqCst);
                    }
                    serve_stream(tls, connection, &shared);
                });
            }
        });
        Receiver {
            addr,
            shared,
            scheme: "https",
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/event", self.scheme, self.addr)
    }

    /// TLS connections whose handshake failed (a certificate refused by either side).
    pub fn failed_handshakes(&self) -> usize {
        self.shared.failed_handshakes.load(Ordering::SeqCst)
    }

    /// TLS connections on which the client presented a certificate.
    pub fn client_certificates(&self) -> usize {
        self.shared.client_certificates.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were open at once: received in full and not yet answered.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_open.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived; false if `timeout` passes first.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let requests = self.shared.requests.lock().unwrap();
        let (requests, _) = self
            .shared
            .arrived
            .wait_timeout_while(requests, timeout, |requests| requests.len() < n)
            .unwrap();
        requests.len() >= n
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, connection: usize, shared: &Shared) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    serve_stream(stream, connection, shared);
}

/// Serves requests on one connection, plain or TLS, until it closes.
fn serve_stream(stream: impl Read + Write, connection: usize, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let close = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let request = Request {
            connection,
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        };
        let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_open.fetch_max(open, Ordering::SeqCst);
        let number = {
            let mut requests = shared.requests.lock().unwrap();
            requests.push(request.clone());
            shared.arrived.notify_all();
            requests.len() - 1
        };
        let reply = (shared.responder)(&request, number);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let mut head = format!(
            "HTTP/1.1 {} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        // One write for head and body: two small writes would meet Nagle's algorithm and the
        // client's delayed ACK, adding 40 ms to every answer.
        head.push_str(&reply.body);
        // No longer open once the answer is on its way: the client may send the next request
        // as soon as it has read it.
        shared.open.fetch_sub(1, Ordering::SeqCst);
        let writer = reader.get_mut();
        let written = writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.flush());
        if written.is_err() || close {
            return;
        }
    }
}

/// A config file for the binary pointing at `endpoint`, with fast retries.
pub fn write_config(dir: &TempDir, endpoint: &str, extra: &str) -> PathBuf {
    dir.write("events.json", EVENTS_JSON);
    dir.write(
        "config.yaml",
        &format!(
            "propagator:\n  endpoint: {endpoint}\n  period_seconds: 0\n  events_file: events.json\n  \
             backoff_max_seconds: 0.05\n  max_retries: 3\n{extra}"
        ),
    )
}

/// The built binary, run in `dir` (where its config.yaml and events.json are).
pub fn propagator(dir: &TempDir, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_event_propagator"));
    command
        .args(args)
        .current_dir(dir.path())
        .env("LOG_LEVEL", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the binary to its end, failing the test if it takes longer than `timeout`.
pub fn run_binary(dir: &TempDir, args: &[&str], timeout: Duration) -> (i32, String) {
    let child = propagator(dir, args).spawn().unwrap();
    let (status, stderr) = wait_with_timeout(child, timeout);
    (status.code().expect("exited, not killed"), stderr)
}

/// Waits for `child` and returns its status and stderr, killing it and failing the test after
/// `timeout`. Output is read on threads so a chatty child never blocks on a full pipe.
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> (ExitStatus, String) {
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the propagator did not exit within {timeout:?}; stderr:\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = stdout.join();
    (status, stderr.join().unwrap())
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Sends the signal named `name` (`TERM`, `HUP`, ...) to a child process.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// The `summary:` line of a run's stderr.
pub fn summary_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("summary: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"))
}

/// A consumer config for `db` on a free port of 127.0.0.1, with two database connections.
pub fn consumer_config(db: &TestDb) -> common::Config {
    let mut config = common::Config {
        database: db.database_config(),
        ..Default::default()
    };
    config.consumer.host = "127.0.0.1".into();
    config.consumer.port = 0;
    config.consumer.workers = 2;
    config
}

/// The keys the propagator logged in `keys.log`, in order.
pub fn logged_keys(dir: &TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.path().join("keys.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The idempotency keys in the table.
pub fn stored_keys(db: &TestDb) -> HashSet<String> {
    db.client()
        .query("SELECT idempotency_key FROM events", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}
