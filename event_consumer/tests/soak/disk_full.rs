//! A full disk under the events table: what a data volume that ran out of space gives
//! (SQLSTATE 53100). The table and its indexes are moved to a tablespace on a small tmpfs,
//! which is then filled; the write-ahead log stays on the cluster's own disk, so the server
//! keeps running and refuses the writes, as it does when a data volume fills up.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use test_support::{ServerUser, TestDb};

use crate::helpers::{
    get_closing, metric_in, post_event, send, wait_until, ConsumerProcess, GOOD_EVENT,
};

/// A tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    /// None when the machine does not let us mount one (not root, or in a container without
    /// the capability); the test says so and checks nothing.
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let mount = std::env::temp_dir().join(format!(
            "evtest-full-disk-{}-{}",
            std::process::id(),
            test_support::free_port()
        ));
        std::fs::create_dir_all(&mount).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&mount)
            .output()
            .ok()?;
        if !mounted.status.success() {
            eprintln!(
                "disk_full: cannot mount a tmpfs ({}); this test needs root",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            let _ = std::fs::remove_dir(&mount);
            return None;
        }
        let disk = SmallDisk { mount };
        let tablespace = disk.tablespace_dir();
        std::fs::create_dir(&tablespace).unwrap();
        let user = ServerUser::detect().unwrap();
        user.take_ownership(&disk.mount).unwrap();
        user.take_ownership(&tablespace).unwrap();
        Some(disk)
    }

    fn tablespace_dir(&self) -> PathBuf {
        self.mount.join("tablespace")
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    /// Writes zeros until the disk refuses.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // The last partial chunk: byte by byte until nothing more fits.
        while file.write_all(&[0]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

fn connects(consumer: &ConsumerProcess) -> f64 {
    let body = send(
        consumer.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .body;
    metric_in(&body, "event_consumer_db_connects_total").unwrap()
}

fn move_events_to(admin: &mut postgres::Client, tablespace: &str) {
    admin
        .batch_execute(&format!(
            "ALTER TABLE events SET TABLESPACE {tablespace}; \
             ALTER INDEX events_pkey SET TABLESPACE {tablespace}; \
             ALTER INDEX events_idempotency_key_key SET TABLESPACE {tablespace}"
        ))
        .unwrap();
}

#[test]
fn a_full_disk_gets_503_and_not_ready_with_a_handful_of_log_lines_and_recovers_when_space_is_freed()
{
    let _shared = crate::beside_other_abuse();
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let db = TestDb::new();
    let tablespace = format!("full_{}", db.name);
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE {tablespace} LOCATION '{}'",
            disk.tablespace_dir().display()
        ))
        .unwrap();
    move_events_to(&mut admin, &tablespace);
    let consumer = ConsumerProcess::start(&db, "", &[("LOG_LEVEL", "info")]);
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);

    disk.fill();
    // The pages already there take rows until they are full; the smallest row there is, so
    // that nothing smaller (the readiness probe's row) fits afterwards either.
    let smallest = r#"{"event_type":"t","event_payload":""}"#;
    let mut stored = 1;
    let mut refused = false;
    for _ in 0..5000 {
        match post_event(consumer.addr, smallest, &[]).status {
            201 => stored += 1,
            503 => {
                refused = true;
                break;
            }
            other => panic!("{other} while the disk fills"),
        }
    }
    assert!(refused, "the full disk refused a write within 5000 rows");

    let connects_before = connects(&consumer);
    for i in 0..40 {
        let response = post_event(consumer.addr, GOOD_EVENT, &[]);
        assert_eq!(response.status, 503, "request {i} on a full disk");
        assert!(response.header("Retry-After").is_some());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        get_closing(consumer.addr, "/readyz").status,
        503,
        "not ready on a full disk"
    );
    let new_sessions = connects(&consumer) - connects_before;
    assert!(
        new_sessions <= 1.0,
        "a full disk keeps the connections: {new_sessions} connects"
    );

    disk.free();
    wait_until(
        "201 again once space is freed",
        Duration::from_secs(15),
        || post_event(consumer.addr, GOOD_EVENT, &[]).status == 201,
    );
    stored += 1;
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);

    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("database 127.0.0.1:"))
        .collect();
    eprintln!(
        "disk_full: {stored} rows stored; the outage in the log:\n{}",
        lines.join("\n")
    );
    assert!(
        (2..=4).contains(&lines.len()),
        "a handful of lines for the outage:\n{log}"
    );
    assert!(
        lines[0].contains("53100"),
        "the cause with its SQLSTATE:\n{log}"
    );
    assert!(lines.last().unwrap().contains("available again"), "{log}");
    assert_eq!(db.count_events(), stored, "every 201 stored, nothing else");

    // Out of the tablespace again, so that it and the tmpfs can go.
    move_events_to(&mut admin, "pg_default");
    drop(admin);
    drop(db);
    if let Ok(mut postgres) = test_support::shared_server().connect("postgres") {
        let _ = postgres.batch_execute(&format!("DROP TABLESPACE IF EXISTS {tablespace}"));
    }
    drop(disk);
}
