use super::*;

/// A directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!(
            "spool-test-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn event(i: usize) -> Spooled {
    Spooled {
        key: format!("key-{i:04}"),
        generated_at_micros: 1_700_000_000_000_000 + i as i64,
        body: format!(r#"{{"event_type":"t","event_payload":"{i}"}}"#).into_bytes(),
    }
}

fn open(dir: &Dir) -> (Spool, Recovered) {
    Spool::open(&dir.0, 1 << 20, None).unwrap()
}

fn keys(events: &[Spooled]) -> Vec<&str> {
    events.iter().map(|e| e.key.as_str()).collect()
}

/// The one segment file of a spool just reopened (recovery leaves one).
fn only_segment(dir: &Dir) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|p| p.ends_with(".log")))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().unwrap()
}

#[test]
fn unsettled_events_come_back_oldest_first_and_settled_ones_do_not() {
    let dir = Dir::new("replay");
    let (spool, recovered) = open(&dir);
    assert!(recovered.events.is_empty());
    let events: Vec<Spooled> = (0..5).map(event).collect();
    spool.add(&events[..2]).unwrap();
    spool.add(&events[2..]).unwrap();
    assert_eq!(spool.pending(), 5);
    spool.settle(&events[1..2], None);
    spool.settle(&events[3..4], None);
    assert_eq!(spool.pending(), 3);
    drop(spool);
    let (spool, recovered) = open(&dir);
    assert_eq!(
        keys(&recovered.events),
        ["key-0000", "key-0002", "key-0004"]
    );
    assert_eq!(
        recovered.events[2], events[4],
        "key, time and body kept exactly"
    );
    assert_eq!((recovered.corrupt, recovered.torn_bytes), (0, 0));
    assert_eq!(spool.pending(), 3);
}

#[test]
fn a_second_spool_on_the_same_directory_is_refused_naming_it() {
    let dir = Dir::new("lock");
    let (_spool, _) = open(&dir);
    let error = Spool::open(&dir.0, 1 << 20, None).unwrap_err();
    assert!(matches!(error.kind, SpoolErrorKind::Locked), "{error:?}");
    assert!(
        error.to_string().contains(&dir.0.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_file_in_place_of_the_directory_is_refused_saying_so() {
    let dir = Dir::new("file");
    fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("spool");
    fs::write(&file, "not a spool").unwrap();
    let error = Spool::open(&file, 1 << 20, None).unwrap_err();
    assert!(
        matches!(error.kind, SpoolErrorKind::NotADirectory),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "spool directory {} exists and is not a directory",
            file.display()
        )
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "not a spool",
        "left as it was"
    );
}

#[test]
fn a_segment_cut_at_every_offset_of_its_last_record_opens_with_the_records_before_it() {
    let dir = Dir::new("torn");
    let (spool, _) = open(&dir);
    let events: Vec<Spooled> = (0..3).map(event).collect();
    for e in &events {
        spool.add(std::slice::from_ref(e)).unwrap();
    }
    drop(spool);
    drop(open(&dir));
    let segment = only_segment(&dir);
    let whole = fs::read(&segment).unwrap();
    let last = format::add_len(events[2].key.len(), events[2].body.len());
    let last_start = whole.len() - last;
    for cut in last_start..whole.len() {
        let case = Dir::new("torn-case");
        fs::create_dir_all(&case.0).unwrap();
        fs::write(case.0.join(segment_name(7)), &whole[..cut]).unwrap();
        let (spool, recovered) = open(&case);
        assert_eq!(
            keys(&recovered.events),
            ["key-0000", "key-0001"],
            "cut at {cut}"
        );
        assert_eq!(recovered.torn_bytes, cut - last_start, "cut at {cut}");
        assert_eq!(recovered.corrupt, 0, "cut at {cut}");
        // The spool goes on working after the cut.
        spool.add(&events[2..]).unwrap();
        assert_eq!(spool.pending(), 3, "cut at {cut}");
    }
}

#[test]
fn a_flipped_byte_in_a_middle_record_costs_that_record_which_is_moved_aside_and_counted() {
    let dir = Dir::new("flip");
    let (spool, _) = open(&dir);
    let events: Vec<Spooled> = (0..3).map(event).collect();
    spool.add(&events).unwrap();
    drop(spool);
    drop(open(&dir));
    let segment = only_segment(&dir);
    let mut bytes = fs::read(&segment).unwrap();
    let first = format::add_len(events[0].key.len(), events[0].body.len());
    bytes[first + 20] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();
    let (_spool, recovered) = open(&dir);
    assert_eq!(keys(&recovered.events), ["key-0000", "key-0002"]);
    assert_eq!(recovered.corrupt, 1);
    let aside: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("corrupted-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
}

#[test]
fn a_rejected_event_leaves_the_spool_for_the_dead_letter_file_with_status_and_error() {
    let dir = Dir::new("reject");
    let (spool, _) = open(&dir);
    let events = [event(0), event(1)];
    spool.add(&events).unwrap();
    spool.settle(&events[..1], Some((422, "event_type: must be a string")));
    assert_eq!(spool.pending(), 1);
    let text = fs::read_to_string(dir.0.join(DEAD_LETTER_FILE)).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["idempotency_key"], "key-0000");
    assert_eq!(lines[0]["status"], 422);
    assert_eq!(lines[0]["error"], "event_type: must be a string");
    assert_eq!(lines[0]["event"]["event_payload"], "0");
    drop(spool);
    let (_spool, recovered) = open(&dir);
    assert_eq!(keys(&recovered.events), ["key-0001"]);
}

#[test]
fn settled_segments_are_deleted_so_the_spool_stays_within_its_bound() {
    let dir = Dir::new("reclaim");
    let (spool, _) = Spool::open(&dir.0, 8192, None).unwrap();
    // Far more than the bound, one at a time, each settled.
    for i in 0..2_000 {
        let e = [event(i)];
        assert!(spool.has_room(200), "full at event {i}");
        spool.add(&e).unwrap();
        spool.settle(&e, None);
    }
    let on_disk: u64 = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 8192, "{on_disk} bytes on disk");
}

#[test]
fn unsettled_events_fill_the_spool_and_nothing_is_dropped() {
    let dir = Dir::new("full");
    let (spool, _) = Spool::open(&dir.0, 4096, None).unwrap();
    let mut added = 0;
    while spool.has_room(100) {
        spool.add(&[event(added)]).unwrap();
        added += 1;
    }
    assert!(added > 20, "{added}");
    drop(spool);
    let (_spool, recovered) = Spool::open(&dir.0, 4096, None).unwrap();
    assert_eq!(recovered.events.len(), added);
}

#[test]
fn concurrent_writers_share_fsyncs_and_log_every_key_once() {
    let dir = Dir::new("group");
    fs::create_dir_all(&dir.0).unwrap();
    let keys_path = dir.0.join("keys.log");
    let keys_log = KeysLog::open(&keys_path).unwrap();
    let (spool, _) = Spool::open(&dir.0.join("spool"), 1 << 24, Some(keys_log)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let spool = &spool;
            s.spawn(move || {
                for i in 0..50 {
                    spool.add(&[event(t * 1000 + i)]).unwrap();
                }
            });
        }
    });
    let logged = fs::read_to_string(&keys_path).unwrap();
    let mut lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 200);
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 200, "a key logged twice");
    assert_eq!(spool.pending(), 200);
}

#[test]
fn spooled_keys_missing_from_the_keys_log_are_logged_at_the_next_open_and_no_key_twice() {
    let dir = Dir::new("unlogged");
    fs::create_dir_all(&dir.0).unwrap();
    let keys_path = dir.0.join("keys.log");
    {
        let keys_log = KeysLog::open(&keys_path).unwrap();
        let (spool, _) = Spool::open(&dir.0.join("spool"), 1 << 20, Some(keys_log)).unwrap();
        spool.add(&[event(0), event(1)]).unwrap();
    }
    // As if killed after the fsync of key-0002 but before its line was written.
    {
        let (spool, _) = Spool::open(&dir.0.join("spool"), 1 << 20, None).unwrap();
        spool.add(&[event(2)]).unwrap();
    }
    let keys_log = KeysLog::open(&keys_path).unwrap();
    let (_spool, recovered) = Spool::open(&dir.0.join("spool"), 1 << 20, Some(keys_log)).unwrap();
    assert_eq!(recovered.events.len(), 3);
    assert_eq!(
        fs::read_to_string(&keys_path).unwrap(),
        "key-0000\nkey-0001\nkey-0002\n"
    );
}
