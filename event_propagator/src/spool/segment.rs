//! Segment files: their names (`segment-<n>.log`, numbered so that names sort oldest first),
//! creating one, and making creations and deletions in the directory durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

pub fn segment_name(id: u64) -> String {
    format!("segment-{id:020}.log")
}

pub fn segment_id(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Makes creations and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(segment_name(id)))
}
