//! The systemd watchdog: `WATCHDOG=1` comes from the database workers' loop, so it stops when
//! every worker is wedged and systemd can restart the service.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::TestDb;

use crate::helpers::{post_event, ConsumerProcess, ProcessOptions, GOOD_EVENT};

const WATCHDOG: Duration = Duration::from_millis(400);

/// Records the arrival time of every `WATCHDOG=1` on a fake notify socket.
struct FakeSystemd {
    pings: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: std::path::PathBuf,
}

impl FakeSystemd {
    fn bind() -> (FakeSystemd, String) {
        let dir = std::env::temp_dir().join(format!(
            "watchdog-{}-{}",
            std::process::id(),
            test_support::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let pings = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pings, stop) = (Arc::clone(&pings), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        if buf[..n]
                            .split(|&b| b == b'\n')
                            .any(|line| line == b"WATCHDOG=1")
                        {
                            pings.lock().unwrap().push(Instant::now());
                        }
                    }
                }
            })
        };
        let fake = FakeSystemd {
            pings,
            stop,
            thread: Some(thread),
            dir,
        };
        (fake, path.to_str().unwrap().to_owned())
    }

    fn pings_between(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.pings
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|&t| t > from && t <= to)
            .collect()
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The longest time without a ping in `[from, to]`, counting the window's edges.
fn longest_silence(pings: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut edges = vec![from];
    edges.extend_from_slice(pings);
    edges.push(to);
    edges.windows(2).map(|w| w[1] - w[0]).max().unwrap()
}

#[test]
fn watchdog_pings_arrive_while_healthy_stop_while_every_worker_is_wedged_and_resume() {
    // Alone: a ping gap measured beside a flood of other tests measures the flood.
    let _alone = crate::measuring_alone();
    let db = TestDb::new();
    let (systemd, socket) = FakeSystemd::bind();
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            // Long enough that the wedge below is ended by the test, not by the server.
            database_yaml: "  statement_timeout_seconds: 30\n",
            env: &[
                ("NOTIFY_SOCKET", &socket),
                ("WATCHDOG_USEC", "400000"),
                ("LOG_LEVEL", "warn"),
            ],
            ..ProcessOptions::default()
        },
    );

    // Healthy, idle and then busy: a ping at least once per interval.
    let healthy_from = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..20 {
        assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    }
    std::thread::sleep(Duration::from_millis(500));
    let healthy_to = Instant::now();
    let healthy = systemd.pings_between(healthy_from, healthy_to);
    let healthy_gap = longest_silence(&healthy, healthy_from, healthy_to);
    println!(
        "healthy: {} pings in {:?}, longest silence {healthy_gap:?} (WATCHDOG_USEC 400 ms)",
        healthy.len(),
        healthy_to - healthy_from
    );
    assert!(
        healthy_gap < WATCHDOG,
        "a healthy consumer was silent for {healthy_gap:?}"
    );

    // Wedge every worker: hold an exclusive lock on the table and send POSTs one at a time
    // until both workers wait on it (one POST each; sent together, one worker would take them
    // all as a single batch).
    let mut locker = db.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut observer = db.client();
    let waiting_workers = |observer: &mut postgres::Client| -> i64 {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'event_consumer' AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .unwrap()
            .get(0)
    };
    let addr = consumer.addr;
    let mut blocked_posts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting_workers(&mut observer) < 2 {
        assert!(
            Instant::now() < deadline,
            "the workers did not block on the lock"
        );
        blocked_posts.push(std::thread::spawn(move || {
            post_event(addr, GOOD_EVENT, &[]).status
        }));
        std::thread::sleep(Duration::from_millis(200));
    }
    let wedged_from = Instant::now();
    std::thread::sleep(Duration::from_millis(2000));
    let wedged_to = Instant::now();
    let wedged = systemd.pings_between(wedged_from, wedged_to);
    println!(
        "both workers wedged on a lock ({} POSTs waiting): {} pings in {:?}",
        blocked_posts.len(),
        wedged.len(),
        wedged_to - wedged_from
    );
    assert!(
        wedged.is_empty(),
        "pings kept coming while every worker was wedged: systemd would never restart it"
    );
    assert!(wedged_to - wedged_from > 2 * WATCHDOG);

    // Released: the waiting POSTs are stored and the pings resume within one interval.
    locker.batch_execute("ROLLBACK").unwrap();
    let released = Instant::now();
    for post in blocked_posts {
        assert_eq!(post.join().unwrap(), 201, "a POST that waited on the lock");
    }
    std::thread::sleep(Duration::from_millis(1000));
    let resumed = systemd.pings_between(released, Instant::now());
    let first = resumed.first().map(|&t| t - released);
    println!(
        "released: first ping after {first:?}, {} pings in the next second",
        resumed.len()
    );
    assert!(
        first.is_some_and(|d| d < WATCHDOG),
        "pings did not resume within {WATCHDOG:?} of the release: {first:?}"
    );
    drop(consumer);
}
