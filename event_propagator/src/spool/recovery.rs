//! Recovery at start: reading every segment back, oldest first, into the unsettled events
//! (a torn tail dropped, a damaged stretch moved aside), rewriting them into a fresh segment,
//! and logging the keys a kill kept out of the keys log. [`read_pending`] reads without
//! changing anything, for checks from outside.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

use super::format;
use super::segment::{create_segment, segment_id, segment_name, sync_dir};
use super::{Recovered, Spooled};
use crate::keys_log::KeysLog;

/// How many of the newest spooled events [`log_unlogged_keys`] checks, and how much of the
/// keys log's end it reads for that: only the last group commit's keys can be missing, and a
/// group is at most `max_in_flight` sends; 100 000 keys are 3.7 MB of log.
const UNLOGGED_CHECK_EVENTS: usize = 100_000;
const UNLOGGED_CHECK_BYTES: u64 = 8 * 1024 * 1024;

/// Appends the keys of spooled events that the keys log lacks: a process killed between the
/// fsync that made them durable and the write of their lines. Without this their replay would
/// store events whose keys are in no log.
pub(super) fn log_unlogged_keys(log: &mut KeysLog, events: &[Spooled]) -> io::Result<()> {
    let newest = &events[events.len().saturating_sub(UNLOGGED_CHECK_EVENTS)..];
    if newest.is_empty() {
        return Ok(());
    }
    let logged = log.recent(UNLOGGED_CHECK_BYTES)?;
    let missing: Vec<&str> = newest
        .iter()
        .map(|e| e.key.as_str())
        .filter(|key| !logged.contains(*key))
        .collect();
    if !missing.is_empty() {
        log::info!(
            "{} spooled key(s) missing from keys log {} (the last run was killed between the \
             spool's fsync and their lines): logged now",
            missing.len(),
            log.path().display()
        );
        log.append_all(&missing)?;
    }
    Ok(())
}

/// The unsettled events of the spool in `dir`, oldest first, read without taking its lock or
/// changing anything (for checks such as `make chaos`'s: what a propagator left behind).
pub fn read_pending(dir: &Path) -> io::Result<Vec<Spooled>> {
    Ok(read_segments(dir, false)?.1.events)
}

/// Reads every segment in `dir`, oldest first, and rewrites the unsettled events into a fresh
/// segment (durable before the old ones are deleted). Returns what was found and the new
/// segment: its file, number and size.
pub(super) fn recover(dir: &Path) -> io::Result<(Recovered, (File, u64, u64))> {
    let (ids, recovered) = read_segments(dir, true)?;
    let id = ids.last().map_or(1, |last| last + 1);
    let mut bytes = Vec::new();
    for event in &recovered.events {
        format::encode_add(
            &event.key,
            event.generated_at_micros,
            &event.body,
            &mut bytes,
        );
    }
    let mut file = create_segment(dir, id)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    sync_dir(dir)?;
    if !ids.is_empty() {
        for old in ids {
            fs::remove_file(dir.join(segment_name(old)))?;
        }
        sync_dir(dir)?;
    }
    Ok((recovered, (file, id, bytes.len() as u64)))
}

/// Reads every segment in `dir`, oldest first: their numbers and the unsettled events in them.
/// With `move_aside`, damaged stretches are copied to files of their own and logged.
fn read_segments(dir: &Path, move_aside: bool) -> io::Result<(Vec<u64>, Recovered)> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().to_str().and_then(segment_id))
        .collect();
    ids.sort_unstable();
    let mut recovered = Recovered::default();
    // In the order first added; a key added twice (a crash between a rewrite and the deletion
    // of the old segments) is kept once.
    let mut order: Vec<Option<Spooled>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for &id in &ids {
        let bytes = fs::read(dir.join(segment_name(id)))?;
        let scan = format::scan(&bytes);
        for record in scan.records {
            match record {
                format::Record::Add {
                    key,
                    generated_at_micros,
                    body,
                } => {
                    if !index.contains_key(key) {
                        index.insert(key.to_owned(), order.len());
                        order.push(Some(Spooled {
                            key: key.to_owned(),
                            generated_at_micros,
                            body: body.to_vec(),
                        }));
                    }
                }
                format::Record::Done { key } => {
                    if let Some(&i) = index.get(key) {
                        order[i] = None;
                    }
                }
            }
        }
        for range in scan.corrupt.iter().filter(|_| move_aside) {
            let aside = dir.join(format!("corrupted-{id:020}-{}.bin", range.start));
            fs::write(&aside, &bytes[range.clone()])?;
            log::warn!(
                "spool segment {}: {} damaged byte(s) at offset {} moved aside to {}",
                segment_name(id),
                range.len(),
                range.start,
                aside.display()
            );
        }
        recovered.corrupt += scan.corrupt.len();
        if let Some(torn) = scan.torn_tail.filter(|_| move_aside) {
            log::info!(
                "spool segment {}: dropped a torn tail of {} byte(s) (a write cut short: never \
                 sent)",
                segment_name(id),
                torn.len()
            );
            recovered.torn_bytes += torn.len();
        }
    }
    recovered.events = order.into_iter().flatten().collect();
    Ok((ids, recovered))
}
