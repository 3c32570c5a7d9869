//! `--keys-log PATH`: one line per generated event, `<idempotency-key>\n`, appended and handed to
//! the kernel before the event's first attempt. A test that kills or disturbs the system can then
//! compare this file with the database: every key here must be stored exactly once (a key whose
//! event was rejected, given up or abandoned is named in the log at error level).
//!
//! Each line is one `write` on a file opened for appending, so it survives the propagator being
//! killed; it is not `fsync`ed (that would cost a disk flush per event), so it does not survive
//! the machine losing power.
//!
//! The file holds whole lines only, each the key of an event that was sent: a write that fails
//! (a full disk stores part of it, then refuses the rest) is cut back to the last whole line
//! before the error is returned, so neither a fragment of a key nor the first keys of a batch
//! that is then not sent stay behind; and a file that ends in a torn line anyway (written by a
//! version without the cut, or cut short by a crash of the machine) has that tail cut when it is
//! opened, so the next run's first key is not fused onto it. The cut assumes this process is the
//! file's only writer, as one keys log per run is.
//!
//! With a spool the spool writes the lines ([`crate::spool`]): after the fsync that made their
//! events durable, in the order they were written, and at start the keys of spooled events that
//! a kill kept out of the file.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct KeysLog {
    path: PathBuf,
    file: File,
    /// The file's length in whole lines: where a failed write is cut back to.
    whole: u64,
}

impl KeysLog {
    /// Opens (creating if needed) `path` for appending, cutting a torn last line.
    pub fn open(path: &Path) -> io::Result<KeysLog> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let length = file.metadata()?.len();
        let whole = whole_lines_length(&file, length)?;
        if whole < length {
            file.set_len(whole)?;
            log::warn!(
                "keys log {}: cut a torn last line of {} bytes (a write that failed before; its \
                 event was not sent)",
                path.display(),
                length - whole
            );
        }
        Ok(KeysLog {
            path: path.to_owned(),
            file,
            whole,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys on the file's last `max_bytes` (a first line cut short left out).
    pub fn recent(&self, max_bytes: u64) -> io::Result<HashSet<String>> {
        let mut file = File::open(&self.path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(max_bytes);
        file.seek(SeekFrom::Start(start))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let mut lines = text.split(|&b| b == b'\n');
        if start > 0 {
            lines.next();
        }
        Ok(lines
            .filter_map(|line| std::str::from_utf8(line).ok())
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Appends `key` and a newline in a single write.
    pub fn append(&mut self, key: &str) -> io::Result<()> {
        self.append_all(&[key])
    }

    /// Appends each key of a batch on its own line, all in a single write, so a batch's keys
    /// are in the file together or not at all: a write that fails is cut back (see the module
    /// documentation).
    pub fn append_all<K: AsRef<str>>(&mut self, keys: &[K]) -> io::Result<()> {
        let length = keys.iter().map(|k| k.as_ref().len() + 1).sum();
        let mut lines = String::with_capacity(length);
        for key in keys {
            lines.push_str(key.as_ref());
            lines.push('\n');
        }
        match self.file.write_all(lines.as_bytes()) {
            Ok(()) => {
                self.whole += lines.len() as u64;
                Ok(())
            }
            Err(error) => match self.file.set_len(self.whole) {
                Ok(()) => Err(error),
                Err(cut) => Err(io::Error::new(
                    error.kind(),
                    format!("{error}; cutting the part written back to the last whole line also failed: {cut}"),
                )),
            },
        }
    }
}

/// The length of `file` (`length` bytes) up to and including its last `\n`: 0 when it has none.
fn whole_lines_length(file: &File, length: u64) -> io::Result<u64> {
    // A torn line is shorter than a key (UUIDs, 36 bytes) unless the file is not a keys log;
    // read back a block at a time until a newline turns up.
    const BLOCK: u64 = 4096;
    let mut end = length;
    let mut buffer = vec![0; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &mut buffer[..(end - start) as usize];
        file.read_exact_at(block, start)?;
        if let Some(newline) = block.iter().rposition(|b| *b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn keys_are_appended_one_per_line_across_opens() {
        let path = temp_path("keys-log-test");
        let mut log = KeysLog::open(&path).unwrap();
        log.append("a").unwrap();
        log.append("b").unwrap();
        drop(log);
        KeysLog::open(&path).unwrap().append("c").unwrap();
        KeysLog::open(&path)
            .unwrap()
            .append_all(&["d", "e"])
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\ne\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_when_the_log_is_opened_so_the_next_key_starts_a_line() {
        let path = temp_path("keys-log-torn");
        let torn = "6f1c2a3e-1111-4222-8333-944445555666\n0a9e77b1-2c";
        for (before, after) in [
            (torn, "6f1c2a3e-1111-4222-8333-944445555666\nnext\n"),
            ("0a9e77b1-2c", "next\n"),
            ("", "next\n"),
        ] {
            std::fs::write(&path, before).unwrap();
            KeysLog::open(&path).unwrap().append("next").unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after, "{before:?}");
        }
        // A tail longer than one block of the backward search.
        let long = format!("a\n{}", "x".repeat(10_000));
        std::fs::write(&path, long).unwrap();
        KeysLog::open(&path).unwrap().append("next").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nnext\n");
        std::fs::remove_file(&path).unwrap();
    }
}
