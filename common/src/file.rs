//! Reading the files the services are pointed at (config, `.env`, events): regular files only,
//! and never more than a stated limit.
//!
//! A FIFO blocks `open` until a writer appears (and a blocked `open` holds up the signal
//! handling that would stop the process); `/dev/zero` or a growing file never ends. So the type
//! is checked before opening, the file is opened non-blocking (a FIFO swapped in after the
//! check cannot block), checked again on the open descriptor, and read through `take(limit + 1)`
//! so that nothing can make a read hold more than the limit.
//!
//! Errors are `io::Error`s whose message says what is wrong without the path; callers add the
//! path (and what the file is for), as they do for any other read error.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A UTF-8 byte order mark, which some editors put at the start of a file.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Opens `path` for reading if it is a regular file (symbolic links followed).
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    refuse_irregular(&std::fs::metadata(path)?)?;
    let file = OpenOptions::new()
        .read(true)
        // Reads of a regular file ignore it; it only keeps `open` of a FIFO from blocking.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    refuse_irregular(&metadata)?;
    Ok((file, metadata))
}

/// Reads all of `path`, a regular file of at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (file, metadata) = open_regular(path)?;
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    // The size is a hint only: the file may grow while it is read.
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0) + 1);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// `bytes` without a leading UTF-8 byte order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// The error for a file over `limit` bytes.
pub fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than the limit of {}", human_bytes(limit)),
    )
}

/// A byte count for messages: "1 MiB (1048576 bytes)" for whole MiB, else "N bytes".
pub fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB ({bytes} bytes)", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn refuse_irregular(metadata: &Metadata) -> io::Result<()> {
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("common-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read_whole() {
        let path = temp_path("small");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_limited(&path, 10).unwrap(), b"0123456789");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_the_limit() {
        let path = temp_path("large");
        std::fs::write(&path, vec![b'x'; 2 * 1024 * 1024 + 1]).unwrap();
        let error = read_limited(&path, 2 * 1024 * 1024)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "larger than the limit of 2 MiB (2097152 bytes)");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn files_that_are_not_regular_are_refused_without_blocking_or_reading_forever() {
        let fifo = temp_path("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo failed");
        let cases = [
            (fifo.as_path(), "named pipe", "a FIFO without a writer"),
            (
                Path::new("/dev/zero"),
                "character device",
                "an endless device",
            ),
            (Path::new("/"), "directory", "a directory"),
        ];
        for (path, needle, reason) in cases {
            let error = read_limited(path, 1024).unwrap_err().to_string();
            assert!(error.contains(needle), "{reason}: {error}");
            assert!(error.contains("not a regular file"), "{reason}: {error}");
        }
        std::fs::remove_file(&fifo).unwrap();
    }

    #[test]
    fn a_leading_byte_order_mark_is_stripped_and_nothing_else() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF[1]"), b"[1]");
        assert_eq!(strip_bom(b"[1]"), b"[1]");
        assert_eq!(strip_bom(b"[\xEF\xBB\xBF]"), b"[\xEF\xBB\xBF]");
    }
}
