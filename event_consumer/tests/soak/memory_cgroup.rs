//! Memory as a container limit sees it (issue 23, item 3): the release consumer with its
//! shipped defaults runs inside a memory cgroup of its own ([`MemoryCgroup`]), which charges
//! kernel stacks and page tables on top of RSS. One test measures the charge per connection
//! that docs/capacity.md states; the other is the soak: 64 MiB, 2,000 slow uploaders and
//! 2,000 unfinished heads (twice over), one keep-alive client storing events throughout.
//!
//! `scripts/soak.sh memory_cgroup --nocapture` prints the figures.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::TestDb;

use crate::abuse::{open_files_limit, QUIET};
use crate::cgroup::MemoryCgroup;
use crate::helpers::{connect, read_response, ConsumerProcess, ProcessOptions};

const MIB: u64 = 1024 * 1024;

/// The container limit the shipped defaults must survive (issue 23).
const CONTAINER_LIMIT: u64 = 64 * MIB;

/// Hostile connections of each kind in one wave.
const HOSTILE_EACH: usize = 2000;

/// Waves of hostile connections: the second meets whatever the first left behind (cached
/// thread stacks, a grown heap).
const WAVES: usize = 2;

/// Threads that open and feed the hostile connections, so no blocked write holds up the rest.
const DRIVERS: usize = 8;

/// How long each wave's connections trickle: past the shipped `read_timeout_seconds` (10 s),
/// so the consumer's own deadlines end the connections it took.
const TRICKLE: Duration = Duration::from_secs(12);

/// The charge docs/capacity.md budgets per connection at most (measured 39 to 73 KiB).
const PER_CONNECTION_BOUND: u64 = 80 * 1024;

/// The same over HTTPS, where a session keeps rustls' buffers (measured 65 to 101 KiB).
const PER_HTTPS_CONNECTION_BOUND: u64 = 112 * 1024;

/// Connections of each kind the measuring test opens: fewer than the shipped
/// `max_connections` (384), so every one is served by a thread of its own.
const MEASURED: usize = 300;

fn start(db: &TestDb, cgroup: &MemoryCgroup, consumer_yaml: &str) -> ConsumerProcess {
    let binary = std::env::var("EVENTS_RELEASE_CONSUMER").unwrap_or_default();
    assert!(
        std::path::Path::new(&binary).is_file(),
        "EVENTS_RELEASE_CONSUMER names no file ({binary:?}): run this test through \
         scripts/soak.sh, which builds the release binary and sets it"
    );
    let procs = cgroup.procs_file();
    ConsumerProcess::start_with(
        db,
        ProcessOptions {
            env: QUIET,
            binary: Some(&binary),
            cgroup_procs: Some(&procs),
            consumer_yaml,
            ..ProcessOptions::default()
        },
    )
}

/// Opens one connection of a measured kind and holds it in its state.
type OpenHeld<'a> = Box<dyn Fn(SocketAddr) -> Held + 'a>;

/// The first bytes of a hostile connection of kind `i`: even ones are slow uploaders (a whole
/// head that declares a body, then a little of it; one in two declares more than the 4 KiB a
/// body may hold outside the body budget), odd ones an unfinished head just under the shipped
/// 16 KiB `max_header_bytes`, which no `auth_token` can refuse before it is complete.
fn hostile_start(i: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        let declared = if i.is_multiple_of(4) { 60_000 } else { 4_000 };
        let mut bytes = format!(
            "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {declared}\r\n\r\n{{\"event_type\":\"slow\",\"event_payload\":\""
        )
        .into_bytes();
        bytes.resize(bytes.len() + declared / 2, b'x');
        bytes
    } else {
        let mut bytes = b"POST /event HTTP/1.1\r\nHost: t\r\nX-Padding: ".to_vec();
        bytes.resize(15 * 1024, b'p');
        bytes
    }
}

/// Opens `count` hostile connections of the kinds from `first`, sends their first bytes, then
/// one byte a second on each until `TRICKLE` has passed; returns the streams to be read.
fn hostile_share(addr: SocketAddr, first: usize, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for i in first..first + count {
        // A connection the kernel refuses (a full backlog) is not one the consumer holds.
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            continue;
        };
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let _ = stream.write_all(&hostile_start(i));
        streams.push(stream);
    }
    let until = Instant::now() + TRICKLE;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
        for stream in &mut streams {
            // A refused or answered connection just fails its writes.
            let _ = stream.write_all(b"x");
        }
    }
    streams
}

/// One wave: 2,000 of each kind at once. Returns how each was answered ("closed": nothing).
fn hostile_wave(addr: SocketAddr) -> std::collections::BTreeMap<String, usize> {
    let per_driver = 2 * HOSTILE_EACH / DRIVERS;
    let drivers: Vec<_> = (0..DRIVERS)
        .map(|d| std::thread::spawn(move || hostile_share(addr, d * per_driver, per_driver)))
        .collect();
    let mut answers = std::collections::BTreeMap::new();
    for driver in drivers {
        for stream in driver.join().unwrap() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let response = read_response(&mut BufReader::new(stream));
            let key = response.map_or("closed".to_owned(), |r| r.status.to_string());
            *answers.entry(key).or_insert(0) += 1;
        }
    }
    answers
}

/// One keep-alive connection, opened before the attack, posting an event every 20 ms until
/// `stop`. Returns the keys acknowledged with 201; any other answer or a broken connection
/// fails the test.
fn keep_alive_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    let stream = connect(addr);
    std::thread::spawn(move || {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut acknowledged = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let key = format!("keep-alive-{}", acknowledged.len());
            let body = r#"{"event_type":"steady","event_payload":"beside the hostile ones"}"#;
            let request = format!(
                "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            writer
                .write_all(request.as_bytes())
                .unwrap_or_else(|e| panic!("the keep-alive connection broke at {key}: {e}"));
            let response = read_response(&mut reader)
                .unwrap_or_else(|| panic!("no answer to {key} on the keep-alive connection"));
            assert_eq!(response.status, 201, "{key}: {}", response.body);
            acknowledged.push(key);
            std::thread::sleep(Duration::from_millis(20));
        }
        acknowledged
    })
}

fn assert_enough_descriptors(needed: usize) {
    let limit = open_files_limit();
    assert!(
        limit >= needed as u64,
        "this test holds about {needed} sockets, but ulimit -n is {limit}: run it through \
         scripts/soak.sh, which raises it"
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[test]
fn shipped_defaults_survive_4000_hostile_connections_in_64_mib_and_a_keep_alive_client_keeps_storing(
) {
    let _alone = crate::measuring_alone();
    assert_enough_descriptors(2 * 2 * HOSTILE_EACH + 100);
    let db = TestDb::new();
    let cgroup = MemoryCgroup::create("soak", CONTAINER_LIMIT);
    let mut consumer = start(&db, &cgroup, "");
    let addr = consumer.addr;
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let steady = keep_alive_client(addr, Arc::clone(&stop));
    let mut waves = Vec::new();
    for _ in 0..WAVES {
        waves.push(hostile_wave(addr));
    }
    stop.store(true, Ordering::Relaxed);
    // Joined first, checked after the cgroup: an OOM kill also breaks the keep-alive client,
    // and the kill is the finding to report.
    let steady = steady.join();
    let peak = cgroup.peak();
    let oom_kills = cgroup.oom_kills();
    println!(
        "{}: limit {:.0} MiB; {WAVES} waves of {HOSTILE_EACH} slow uploaders + {HOSTILE_EACH} \
         unfinished heads, answers {waves:?}, after {:?}: peak charge {:.1} MiB, now {:.1} MiB, \
         limit hits {}, OOM kills {oom_kills}",
        cgroup.describe(),
        mib(CONTAINER_LIMIT),
        started.elapsed(),
        mib(peak),
        mib(cgroup.usage()),
        cgroup.limit_hits(),
    );
    assert_eq!(oom_kills, 0, "the OOM killer ran in the consumer's cgroup");
    assert!(consumer.is_running(), "the consumer exited");
    assert!(
        peak < CONTAINER_LIMIT,
        "peak charge {peak} reached the limit"
    );
    let acknowledged = steady.expect("the keep-alive client got a 201 for every event");
    println!(
        "the keep-alive client stored {} events meanwhile",
        acknowledged.len()
    );
    assert!(
        !acknowledged.is_empty(),
        "the keep-alive client stored nothing"
    );
    let mut client = db.client();
    let keys: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE idempotency_key = ANY($1)",
            &[&keys],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, keys.len() as i64, "acknowledged events missing");
    assert_eq!(
        db.count_events(),
        stored,
        "rows nobody was told were stored"
    );
}

/// A connection the measuring test holds open, plain or TLS.
type Held = Box<dyn std::any::Any>;

/// The charge of `MEASURED` connections made by `open`, in KiB per connection, and the
/// charge before them: each kind on a fresh consumer in a fresh group, so that no kind finds
/// the thread stacks another left in glibc's cache.
fn charge_per_connection(
    db: &TestDb,
    consumer_yaml: &str,
    mut open: impl FnMut(SocketAddr) -> Held,
) -> (f64, u64) {
    // Large enough never to interfere: this measures, the soak above limits.
    let cgroup = MemoryCgroup::create("measure", 1024 * MIB);
    let consumer = start(db, &cgroup, consumer_yaml);
    let addr = consumer.addr;
    std::thread::sleep(Duration::from_secs(1));
    let before = cgroup.usage();
    let held: Vec<Held> = (0..MEASURED).map(|_| open(addr)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let after = cgroup.usage();
    drop(held);
    drop(consumer);
    (
        after.saturating_sub(before) as f64 / 1024.0 / MEASURED as f64,
        before,
    )
}

/// Opens a plain connection and sends `first`, which the consumer does not answer yet.
fn plain(addr: SocketAddr, first: &[u8]) -> Held {
    let mut stream = connect(addr);
    stream.write_all(first).unwrap();
    Box::new(stream)
}

/// An HTTPS connection to the consumer at `addr`.
fn https(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsStream {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    rustls::StreamOwned::new(session, connect(addr))
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Makes one `/healthz` request on `stream` and keeps it open.
fn idle<S: Read + Write + 'static>(mut stream: S) -> Held {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("an answer before idling");
    assert_eq!(response.status, 200, "{}", response.body);
    Box::new(reader)
}

/// The most one connection holds: a gzip batch on `stream` (the deepest stack path, decoding
/// and storing), answered, then an unfinished 15 KiB head, which fills the read buffer.
fn worst<S: Read + Write + 'static>(mut stream: S) -> Held {
    let batch = format!(
        "[{}]",
        vec![r#"{"event_type":"batch","event_payload":"deep"}"#; 20].join(",")
    );
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(batch.as_bytes()).unwrap();
    let body = encoder.finish().unwrap();
    let mut request = format!(
        "POST /events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend(body);
    stream.write_all(&request).unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("an answer to the batch");
    assert!(
        response.status < 300,
        "{}: {}",
        response.status,
        response.body
    );
    reader.get_mut().write_all(&hostile_start(1)).unwrap();
    Box::new(reader)
}

#[test]
fn the_cgroup_charge_per_connection_stays_within_what_docs_capacity_budgets() {
    let _alone = crate::measuring_alone();
    assert_enough_descriptors(2 * MEASURED + 100);
    let db = TestDb::new();
    let short_head = b"POST /event HTTP/1.1\r\nHost: t\r\nX-Padding: p";
    let kinds: [(&str, OpenHeld<'_>); 5] = [
        ("idle keep-alive", Box::new(|a| idle(connect(a)))),
        (
            "partial body (4,000 declared)",
            Box::new(|a| plain(a, &hostile_start(2))),
        ),
        (
            "unfinished head (100 bytes)",
            Box::new(|a| plain(a, short_head)),
        ),
        (
            "unfinished head (15 KiB)",
            Box::new(|a| plain(a, &hostile_start(1))),
        ),
        (
            "a gzip batch, then an unfinished 15 KiB head",
            Box::new(|a| worst(connect(a))),
        ),
    ];
    let mut measured: Vec<(&str, f64, u64, u64)> = kinds
        .into_iter()
        .map(|(what, open)| {
            let (kib, baseline) = charge_per_connection(&db, "", open);
            (what, kib, baseline, PER_CONNECTION_BOUND)
        })
        .collect();

    let pki = test_support::Pki::new();
    let server = pki.server_cert("server", &["localhost"]);
    let roots = common::tls::read_root_store("test ca", pki.ca_file()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(common::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let yaml = format!(
        "  tls_cert_file: {}\n  tls_key_file: {}\n",
        server.cert.display(),
        server.key.display()
    );
    let over_https: [(&str, OpenHeld<'_>); 2] = [
        (
            "idle keep-alive over HTTPS",
            Box::new(|a| idle(https(a, &config))),
        ),
        (
            "over HTTPS: a gzip batch, then an unfinished 15 KiB head",
            Box::new(|a| worst(https(a, &config))),
        ),
    ];
    for (what, open) in over_https {
        let (kib, baseline) = charge_per_connection(&db, &yaml, open);
        measured.push((what, kib, baseline, PER_HTTPS_CONNECTION_BOUND));
    }

    for (what, kib, baseline, bound) in measured {
        println!(
            "{what}: {kib:.1} KiB per connection ({MEASURED} connections, over a baseline of \
             {:.1} MiB)",
            mib(baseline)
        );
        assert!(
            kib > 0.0 && kib * 1024.0 <= bound as f64,
            "{what}: {kib:.1} KiB per connection, docs/capacity.md budgets {} KiB",
            bound / 1024
        );
    }
}
