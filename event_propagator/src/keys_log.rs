//! `--keys-log PATH`: one line per generated event, `<idempotency-key>\n`, appended and handed to
//! the kernel before the event's first attempt. A test that kills or disturbs the system can then
//! compare this file with the database: every key here must be stored exactly once (a key whose
//! event was rejected, given up or abandoned is named in the log at error level).
//!
//! Each line is one `write` on a file opened for appending, so it survives the propagator being
//! killed; it is not `fsync`ed (that would cost a disk flush per event), so it does not survive
//! the machine losing power.
//!
//! With a spool the spool writes the lines ([`crate::spool`]): after the fsync that made their
//! events durable, in the order they were written, and at start the keys of spooled events that
//! a kill kept out of the file.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct KeysLog {
    path: PathBuf,
    file: File,
}

impl KeysLog {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> io::Result<KeysLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(KeysLog {
            path: path.to_owned(),
            file,
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
    /// are in the file together or (killed before the write) not at all.
    pub fn append_all<K: AsRef<str>>(&mut self, keys: &[K]) -> io::Result<()> {
        let length = keys.iter().map(|k| k.as_ref().len() + 1).sum();
        let mut lines = String::with_capacity(length);
        for key in keys {
            lines.push_str(key.as_ref());
            lines.push('\n');
        }
        self.file.write_all(lines.as_bytes())?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_appended_one_per_line_across_opens() {
        let path = std::env::temp_dir().join(format!("keys-log-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
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
}
