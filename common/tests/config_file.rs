//! `Config::load` on files that are not plain config text: a byte order mark, a FIFO, a device,
//! a file over the limit. Each refusal names the file and returns at once.

use std::path::{Path, PathBuf};
use std::process::Command;

use common::config::CONFIG_MAX_BYTES;
use common::Config;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("common-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_config_file_with_a_utf8_byte_order_mark_loads() {
    let dir = temp_dir("bom");
    let path = dir.join("config.yaml");
    std::fs::write(&path, b"\xEF\xBB\xBFpropagator:\n  period_seconds: 2\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().propagator.period_seconds, 2.0);
    std::fs::write(&path, b"\xEF\xBB\xBF# only a comment\n").unwrap();
    assert_eq!(
        Config::load(&path).unwrap(),
        Config::default(),
        "comments only"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_files_that_are_not_regular_or_too_large_are_refused_naming_the_file() {
    let dir = temp_dir("refused");
    let fifo = dir.join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let large = dir.join("large.yaml");
    let mut text = "# padding\n".repeat((CONFIG_MAX_BYTES / 10) as usize);
    text.push_str("propagator:\n  period_seconds: 2\n");
    std::fs::write(&large, text).unwrap();
    let cases = [
        (
            fifo.as_path(),
            "named pipe (FIFO), not a regular file",
            "a FIFO, which would block",
        ),
        (
            Path::new("/dev/zero"),
            "character device",
            "an endless device",
        ),
        (
            large.as_path(),
            "larger than the limit of 1 MiB",
            "a file over 1 MiB",
        ),
    ];
    for (path, needle, reason) in cases {
        let message = Config::load(path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("cannot read config file {}: ", path.display())),
            "{reason}: {message}"
        );
        assert!(message.contains(needle), "{reason}: {message}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
