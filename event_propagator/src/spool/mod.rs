//! The durable spool (`propagator.spool_dir`, `--spool-dir`): every event is written to a
//! segment log in the spool directory and fsynced before its first attempt, and leaves it only
//! when the consumer settles it (delivered, or rejected and moved to `rejected.ndjson`), so an
//! outage, a crash or a power cut loses nothing the propagator generated; the events still in
//! the spool at the next start are replayed with their original keys, which the consumer
//! stores once.
//!
//! The log (`segment-<n>.log`) is a sequence of records with a checksum each (`format.rs`): an
//! *add* per event (key, generation time, the body that is sent) and a *done* when it is
//! settled. Writers append under one lock and share fsyncs (group commit): the first to need
//! one syncs everything written so far while the others wait for it, so several sends that
//! take their slots during one fsync pay for one. A *done* is not fsynced on its own: lost in a
//! power cut, it costs a replay the consumer answers as a duplicate. A segment is deleted when
//! it is the oldest and holds no unsettled event (so a *done* never outlives the *add* before
//! it), and a new one begins when the current one passes an eighth of `spool_max_bytes`.
//!
//! At start ([`Spool::open`], `recovery.rs`) the spool takes its lock (`lock.rs`), reads every
//! segment (`segment.rs` names them), drops a torn tail (an unfinished write: never sent, since
//! the fsync precedes the first attempt), copies a damaged stretch aside to
//! `corrupted-<segment>-<offset>.bin` and counts it, writes the unsettled events to a fresh
//! segment and deletes the old ones; none of this stops the propagator from starting.
//!
//! With `--keys-log`, the keys of an event are appended by the fsync that made it durable, in
//! the order the events were written, so every logged key is stored or still spooled.

mod dead_letter;
mod format;
mod lock;
mod recovery;
mod segment;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use common::logging::RateLimited;
use common::sync::{lock, wait};

use crate::keys_log::KeysLog;

pub use dead_letter::{rfc3339, FILE as DEAD_LETTER_FILE};
pub use format::add_len;
pub use recovery::read_pending;

use recovery::{log_unlogged_keys, recover};
use segment::{create_segment, segment_name, sync_dir};

/// One event as the spool keeps it: what a replay needs to send it again unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub key: String,
    /// When the event was generated (its slot was taken), in µs since the epoch.
    pub generated_at_micros: i64,
    /// The JSON body of `POST /event`; a batch's item is this with its key added.
    pub body: Vec<u8>,
}

impl Spooled {
    /// Microseconds since the epoch of `at`.
    pub fn micros(at: SystemTime) -> i64 {
        match at.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => after.as_micros() as i64,
            Err(before) => -(before.duration().as_micros() as i64),
        }
    }
}

/// Why the spool cannot be used. Setup errors: the run does not start.
#[derive(Debug)]
pub struct SpoolError {
    pub dir: PathBuf,
    pub kind: SpoolErrorKind,
}

#[derive(Debug)]
pub enum SpoolErrorKind {
    /// Another propagator holds the directory's lock.
    Locked,
    /// The path names a file (or anything else) that is not a directory.
    NotADirectory,
    Io(io::Error),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        match &self.kind {
            SpoolErrorKind::Locked => write!(
                f,
                "spool directory {dir} is in use by another propagator (it holds {dir}/{}); \
                 give each propagator a spool directory of its own",
                lock::LOCK_FILE
            ),
            SpoolErrorKind::NotADirectory => {
                write!(f, "spool directory {dir} exists and is not a directory")
            }
            SpoolErrorKind::Io(e) => write!(f, "spool directory {dir}: {e}"),
        }
    }
}

impl std::error::Error for SpoolError {}

/// Why [`Spool::add`] did not make events durable.
#[derive(Debug)]
pub enum AddError {
    /// The spool could not be written: the events are not spooled (their keys are logged), and
    /// may be sent without that guarantee.
    Io(io::Error),
    /// The events are spooled but the keys log could not be written: no more may be sent.
    KeysLog(io::Error),
}

/// What [`Spool::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The unsettled events, oldest first.
    pub events: Vec<Spooled>,
    /// Damaged stretches moved aside.
    pub corrupt: usize,
    /// Bytes of torn tails dropped.
    pub torn_bytes: usize,
}

/// An open spool, shared by every sender thread.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// When the current segment passes this, the next write begins a new one.
    segment_bytes: u64,
    state: Mutex<State>,
    /// An fsync ended.
    synced: Condvar,
    /// Holds the directory's lock while the spool is open.
    _lock: File,
}

#[derive(Debug)]
struct State {
    /// Oldest first; the last is the one written to.
    segments: VecDeque<Segment>,
    active: Arc<File>,
    /// Unsettled events: key → the segment holding its add.
    pending: HashMap<String, u64>,
    dead_letter_bytes: u64,
    /// Writes made (`written`) and made durable (`synced`), numbered from 1.
    written: u64,
    synced: u64,
    syncing: bool,
    keys_log: Option<KeysLog>,
    /// Keys to log once the write that carries them (by number) is durable.
    keys_waiting: VecDeque<(u64, Vec<String>)>,
    keys_log_failed: Option<io::ErrorKind>,
    errors: RateLimited,
    /// Events written and fsyncs made since the spool was opened, for the run's last line.
    added: u64,
    fsyncs: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Unsettled events whose add it holds.
    live: usize,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, takes its lock, and recovers what an
    /// earlier run left: see the module documentation. `keys_log` is written from then on by
    /// the spool, after each fsync.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        keys_log: Option<KeysLog>,
    ) -> Result<(Spool, Recovered), SpoolError> {
        let error = |kind| SpoolError {
            dir: dir.to_owned(),
            kind,
        };
        if fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(error(SpoolErrorKind::NotADirectory));
        }
        fs::create_dir_all(dir).map_err(|e| error(SpoolErrorKind::Io(e)))?;
        let lock_file = lock::take(dir).map_err(|e| match e {
            lock::LockError::Held => error(SpoolErrorKind::Locked),
            lock::LockError::Io(e) => error(SpoolErrorKind::Io(e)),
        })?;
        let (recovered, segment) = recover(dir).map_err(|e| error(SpoolErrorKind::Io(e)))?;
        let mut keys_log = keys_log;
        if let Some(log) = &mut keys_log {
            log_unlogged_keys(log, &recovered.events).map_err(|e| error(SpoolErrorKind::Io(e)))?;
        }
        let dead_letter_bytes = match fs::metadata(dir.join(DEAD_LETTER_FILE)) {
            Ok(metadata) => metadata.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(error(SpoolErrorKind::Io(e))),
        };
        let (file, id, bytes) = segment;
        let pending = recovered
            .events
            .iter()
            .map(|e| (e.key.clone(), id))
            .collect();
        let state = State {
            segments: VecDeque::from([Segment {
                id,
                bytes,
                live: recovered.events.len(),
            }]),
            active: Arc::new(file),
            pending,
            dead_letter_bytes,
            written: 0,
            synced: 0,
            syncing: false,
            keys_log,
            keys_waiting: VecDeque::new(),
            keys_log_failed: None,
            errors: RateLimited::new(log::Level::Error, Duration::from_secs(1), "errors"),
            added: 0,
            fsyncs: 0,
        };
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1024, 4 * 1024 * 1024),
            state: Mutex::new(state),
            synced: Condvar::new(),
            _lock: lock_file,
        };
        Ok((spool, recovered))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `bytes` more fit within `spool_max_bytes`.
    pub fn has_room(&self, bytes: u64) -> bool {
        let state = lock(&self.state);
        let used: u64 = state.segments.iter().map(|s| s.bytes).sum();
        used + state.dead_letter_bytes + bytes <= self.max_bytes
    }

    /// How many events are in the spool, unsettled.
    pub fn pending(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// Events written and fsyncs made (group commits) since the spool was opened.
    pub fn writes(&self) -> (u64, u64) {
        let state = lock(&self.state);
        (state.added, state.fsyncs)
    }

    /// Writes `events` and returns once they are durable (and their keys logged).
    pub fn add(&self, events: &[Spooled]) -> Result<(), AddError> {
        let mut bytes = Vec::new();
        for event in events {
            format::encode_add(
                &event.key,
                event.generated_at_micros,
                &event.body,
                &mut bytes,
            );
        }
        let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
        let mut state = lock(&self.state);
        if let Some(kind) = state.keys_log_failed {
            return Err(AddError::KeysLog(kind.into()));
        }
        if let Err(e) = self.append(&mut state, &bytes) {
            // Not spooled, but about to be sent: its keys are logged all the same, and the
            // error shares the spool's rate limit (a full disk fails every add).
            let now = Instant::now();
            state.errors.log(
                now,
                format_args!(
                    "cannot write to spool {}: {e}; sending {} without it",
                    self.dir.display(),
                    keys.first().map_or("", String::as_str)
                ),
            );
            if let Some(log) = &mut state.keys_log {
                if let Err(log_error) = log.append_all(&keys) {
                    state.keys_log_failed = Some(log_error.kind());
                    return Err(AddError::KeysLog(log_error));
                }
            }
            return Err(AddError::Io(e));
        }
        let id = state.segments.back().map_or(0, |s| s.id);
        if let Some(segment) = state.segments.back_mut() {
            segment.live += events.len();
        }
        for key in &keys {
            state.pending.insert(key.clone(), id);
        }
        state.written += 1;
        state.added += events.len() as u64;
        let number = state.written;
        if state.keys_log.is_some() {
            state.keys_waiting.push_back((number, keys));
        }
        self.wait_durable(state, number)
    }

    /// Appends `bytes` to the current segment, beginning a new one first if it is full.
    fn append(&self, state: &mut State, bytes: &[u8]) -> io::Result<()> {
        let full = state
            .segments
            .back()
            .is_some_and(|s| s.bytes >= self.segment_bytes);
        if full {
            // What the old segment holds must be durable before writes move on: the fsyncs
            // that follow sync only the new one.
            state.active.sync_data()?;
            let id = state.segments.back().map_or(0, |s| s.id) + 1;
            let file = create_segment(&self.dir, id)?;
            sync_dir(&self.dir)?;
            state.active = Arc::new(file);
            state.segments.push_back(Segment {
                id,
                bytes: 0,
                live: 0,
            });
        }
        let Some(segment) = state.segments.back_mut() else {
            return Ok(());
        };
        let before = segment.bytes;
        let written = (&*state.active).write_all(bytes);
        // A write that failed part-way (a full disk) is cut off again, so the next record
        // follows whole ones instead of a torn stretch that recovery would set aside. Counted
        // only when that fails too: then the bytes may be on disk.
        if written.is_ok() || state.active.set_len(before).is_err() {
            segment.bytes += bytes.len() as u64;
        }
        written
    }

    /// Waits until write `number` is durable, syncing it (and every write before and beside
    /// it) when no other thread is, then logs the keys that became durable, in order.
    fn wait_durable<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        number: u64,
    ) -> Result<(), AddError> {
        loop {
            if state.synced >= number {
                return match state.keys_log_failed {
                    Some(kind) => Err(AddError::KeysLog(kind.into())),
                    None => Ok(()),
                };
            }
            if state.syncing {
                state = wait(&self.synced, state);
                continue;
            }
            state.syncing = true;
            let target = state.written;
            let file = Arc::clone(&state.active);
            drop(state);
            let result = file.sync_data();
            state = lock(&self.state);
            state.syncing = false;
            state.fsyncs += 1;
            if let Err(e) = result {
                // The bytes are written, only not known to be durable: the events are sent all
                // the same rather than held back by a failing disk.
                let now = Instant::now();
                state.errors.log(
                    now,
                    format_args!("cannot fsync the spool in {}: {e}", self.dir.display()),
                );
            }
            state.synced = target;
            self.log_durable_keys(&mut state);
            self.synced.notify_all();
        }
    }

    fn log_durable_keys(&self, state: &mut State) {
        let State {
            keys_log,
            keys_waiting,
            synced,
            keys_log_failed,
            ..
        } = state;
        let Some(log) = keys_log else { return };
        while keys_waiting.front().is_some_and(|(n, _)| *n <= *synced) {
            let Some((_, keys)) = keys_waiting.pop_front() else {
                break;
            };
            if keys_log_failed.is_some() {
                continue;
            }
            if let Err(e) = log.append_all(&keys) {
                log::error!(
                    "cannot write keys log {}: {e}; stopping before sending unlogged events \
                     (they stay in the spool)",
                    log.path().display()
                );
                *keys_log_failed = Some(e.kind());
            }
        }
    }

    /// Takes settled events out of the spool: delivered (`rejection` none), or refused for
    /// good with `(status, error)`, in which case they are first appended to
    /// `rejected.ndjson` (and fsynced). Keys not in the spool are ignored.
    pub fn settle(&self, events: &[Spooled], rejection: Option<(u16, &str)>) {
        let mut state = lock(&self.state);
        if let Some((status, error)) = rejection {
            let now = SystemTime::now();
            let lines: Vec<u8> = events
                .iter()
                .flat_map(|e| {
                    dead_letter::line(&e.key, e.generated_at_micros, &e.body, status, error, now)
                })
                .collect();
            state.dead_letter_bytes += lines.len() as u64;
            if let Err(e) = self.append_dead_letters(&lines) {
                // Kept in the spool instead: the next run sends them again and, refused again,
                // tries the file again.
                let now = Instant::now();
                state.errors.log(
                    now,
                    format_args!(
                        "cannot write {}: {e}; the rejected events stay in the spool",
                        self.dir.join(DEAD_LETTER_FILE).display()
                    ),
                );
                return;
            }
        }
        let mut done = Vec::new();
        for event in events {
            if let Some(id) = state.pending.remove(&event.key) {
                format::encode_done(&event.key, &mut done);
                if let Some(segment) = state.segments.iter_mut().find(|s| s.id == id) {
                    segment.live -= 1;
                }
            }
        }
        if done.is_empty() {
            return;
        }
        if let Err(e) = self.append(&mut state, &done) {
            let now = Instant::now();
            state.errors.log(
                now,
                format_args!(
                    "cannot write to spool {}: {e}; settled events may be sent again after a \
                     restart (the consumer stores them once)",
                    self.dir.display()
                ),
            );
        }
        self.reclaim(&mut state);
    }

    fn append_dead_letters(&self, lines: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(DEAD_LETTER_FILE))?;
        file.write_all(lines)?;
        file.sync_data()
    }

    /// Deletes the oldest segments while they hold no unsettled event (never the current one).
    fn reclaim(&self, state: &mut State) {
        while state.segments.len() > 1 && state.segments[0].live == 0 {
            let id = state.segments[0].id;
            match fs::remove_file(self.dir.join(segment_name(id))) {
                Ok(()) => {
                    state.segments.pop_front();
                }
                Err(e) => {
                    let now = Instant::now();
                    state.errors.log(
                        now,
                        format_args!("cannot delete spool segment {}: {e}", segment_name(id)),
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
