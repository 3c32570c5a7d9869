//! The keys log on a full disk: a small tmpfs (mounted here, as root) filled to one free page,
//! so a write of the keys log stops part way, as on a real full disk.

use std::collections::HashSet;
use std::path::Path;

use event_propagator::{run, End, Stop};

use crate::helpers::*;
use crate::tmpfs::Tmpfs;

/// The keys of every item the receiver got.
fn received_keys(receiver: &Receiver) -> HashSet<String> {
    receiver
        .requests()
        .iter()
        .flat_map(|r| r.item_keys())
        .collect()
}

/// The lines of the keys log at `path`, checked to be whole keys, the last one ended.
fn whole_keys(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let tail = &text[text.len().saturating_sub(80)..];
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a torn line at the end: …{tail:?}"
    );
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in &lines {
        assert!(
            uuid::Uuid::parse_str(line).is_ok(),
            "not a whole key: {line:?}"
        );
    }
    lines
}

#[test]
fn on_a_full_disk_the_keys_log_keeps_whole_lines_of_the_batches_that_were_sent() {
    let dir = TempDir::new();
    let Some(tmpfs) = Tmpfs::mount(&dir, "full", "64k") else {
        return;
    };
    // One free page: two batches of 50 keys (1,850 bytes each) fit, the third stops part way.
    let filler = tmpfs.fill_leaving(1);
    let receiver = Receiver::start(|request, _| Reply::batch(request, |_| false));
    let keys_path = tmpfs.path.join("keys.log");
    let mut settings = settings(&dir, &receiver.url());
    settings.batch_size = 50;
    settings.count = Some(10);
    settings.keys_log = Some(keys_path.clone());
    let summary = run(settings.clone(), &Stop::new()).unwrap();
    assert_eq!(summary.end, End::KeysLogFailed, "{summary}");
    assert_eq!(summary.exit_code(), 1);
    assert_eq!((summary.batches, summary.delivered), (2, 100), "{summary}");
    let lines = whole_keys(&keys_path);
    assert_eq!(
        lines.iter().cloned().collect::<HashSet<_>>(),
        received_keys(&receiver),
        "the log holds the keys of the batches sent, and only those"
    );
    assert_eq!(lines.len(), 100);

    // With room again, the next run appends whole lines after them.
    std::fs::remove_file(filler).unwrap();
    settings.count = Some(1);
    settings.seed = Some(2);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(
        (summary.end, summary.delivered),
        (End::Count, 50),
        "{summary}"
    );
    let lines = whole_keys(&keys_path);
    assert_eq!(lines.len(), 150);
    assert_eq!(
        lines.iter().cloned().collect::<HashSet<_>>(),
        received_keys(&receiver)
    );
}

#[test]
fn on_a_full_disk_a_single_key_is_never_left_torn() {
    let dir = TempDir::new();
    let Some(tmpfs) = Tmpfs::mount(&dir, "full", "64k") else {
        return;
    };
    // One page holds 110 keys of 37 bytes and 26 bytes of the 111th.
    tmpfs.fill_leaving(1);
    let receiver = Receiver::accepting();
    let keys_path = tmpfs.path.join("keys.log");
    let mut settings = settings(&dir, &receiver.url());
    settings.count = Some(200);
    settings.keys_log = Some(keys_path.clone());
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(
        (summary.end, summary.sent),
        (End::KeysLogFailed, 110),
        "{summary}"
    );
    let lines = whole_keys(&keys_path);
    let sent: Vec<String> = receiver.requests().iter().map(|r| r.key()).collect();
    assert_eq!(lines, sent, "every key sent, in order, and no other");
}
