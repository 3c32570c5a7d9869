//! A small tmpfs (mounted here, as root) filled to a few free pages, so that a write stops part
//! way, as on a real full disk.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::helpers::TempDir;

/// A tmpfs mounted on a directory, unmounted on drop (before the [`TempDir`] holding it is
/// removed, as it is declared after it).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`64k`) on `dir/name`; `None` where mounting is not permitted
    /// (not root, no CAP_SYS_ADMIN in a container; see `test_support::privileged`).
    pub fn mount(dir: &TempDir, name: &str, size: &str) -> Option<Tmpfs> {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs { path }),
            Ok(output) => {
                let why = format!(
                    "cannot mount a tmpfs to fill ({})",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                test_support::privileged::unavailable("writing on a full disk", why);
                None
            }
            Err(e) => {
                let why = format!("cannot run mount ({e})");
                test_support::privileged::unavailable("writing on a full disk", why);
                None
            }
        }
    }

    /// Fills the file system, then frees `pages` pages of 4 KiB: room for that much and no more.
    pub fn fill_leaving(&self, pages: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        // A full disk stores what fits, then refuses: the file ends at a page boundary.
        while file.write_all(&[0; 4096]).is_ok() {}
        let length = file.metadata().unwrap().len();
        assert!(length >= pages * 4096, "the tmpfs holds {length} bytes");
        file.set_len(length - pages * 4096).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    /// Unmounts, waiting a moment for threads of an in-process run that outlive it with a file
    /// open there, then detaching it lazily rather than leaving it mounted.
    fn drop(&mut self) {
        for _ in 0..50 {
            let unmounted = Command::new("umount")
                .arg(&self.path)
                .stderr(std::process::Stdio::null())
                .status();
            if unmounted.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
