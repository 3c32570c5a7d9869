//! `--keys-log PATH`: one line per generated event, `<idempotency-key>\n`, appended and handed to
//! the kernel before the event's first attempt. A test that kills or disturbs the system can then
//! compare this file with the database: every key here must be stored exactly once (a key whose
//! event was rejected, given up or abandoned is named in the log at error level).
//!
//! Each line is one `write` on a file opened for appending, so it survives the propagator being
//! killed; it is not `fsync`ed (that would cost a disk flush per event), so it does not survive
//! the machine losing power.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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

    /// Appends `key` and a newline in a single write.
    pub fn append(&mut self, key: &str) -> io::Result<()> {
        let mut line = String::with_capacity(key.len() + 1);
        line.push_str(key);
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
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
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        std::fs::remove_file(&path).unwrap();
    }
}
