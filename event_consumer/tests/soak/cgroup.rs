//! A memory cgroup of its own for one consumer process: what a container limit sees. The
//! kernel charges a process's anonymous pages and, for each thread, its kernel stack, task
//! structures and page tables: more than its resident set (VmRSS) shows.
//!
//! cgroup v2 (`memory.max`, `memory.peak`, `memory.events`) where its memory controller is
//! available, else v1 (`memory.limit_in_bytes`, `memory.max_usage_in_bytes`,
//! `memory.oom_control`, `memory.failcnt`). Swap is disabled inside the group, so that a charge
//! over the limit is an OOM kill and not a slow swap. Needs root; without either hierarchy the
//! test fails and says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

const V1_ROOT: &str = "/sys/fs/cgroup/memory";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Version {
    V1,
    V2,
}

#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
}

impl MemoryCgroup {
    /// A new group limited to `limit_bytes`, named after this process and `name`.
    pub fn create(name: &str, limit_bytes: u64) -> MemoryCgroup {
        let leaf = format!("events-soak-{}-{name}", std::process::id());
        let (dir, version) = match v2_root() {
            Some(root) => (root.join(leaf), Version::V2),
            None if Path::new(V1_ROOT).join("memory.limit_in_bytes").is_file() => {
                (Path::new(V1_ROOT).join(leaf), Version::V1)
            }
            None => panic!(
                "no memory cgroup: neither a cgroup v2 hierarchy with the memory controller nor \
                 {V1_ROOT} (cgroup v1) is mounted; run the soak on a Linux host or VM as root"
            ),
        };
        if let Err(e) = std::fs::create_dir(&dir) {
            panic!(
                "cannot create the memory cgroup {}: {e} (the soak needs root)",
                dir.display()
            );
        }
        let group = MemoryCgroup { dir, version };
        match version {
            Version::V1 => {
                group.write("memory.limit_in_bytes", limit_bytes);
                // Present only with swap accounting; must not be below the limit above.
                if group.dir.join("memory.memsw.limit_in_bytes").is_file() {
                    group.write("memory.memsw.limit_in_bytes", limit_bytes);
                }
            }
            Version::V2 => {
                group.write("memory.max", limit_bytes);
                if group.dir.join("memory.swap.max").is_file() {
                    group.write("memory.swap.max", 0);
                }
            }
        }
        group
    }

    /// Write a pid here to move that process into the group.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Which interface the figures come from, for the report.
    pub fn describe(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!("cgroup {version} at {}", self.dir.display())
    }

    /// Bytes charged now.
    pub fn usage(&self) -> u64 {
        self.read(match self.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        })
    }

    /// The highest charge since the group was made (`memory.peak` needs Linux 5.19 on v2).
    pub fn peak(&self) -> u64 {
        self.read(match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        })
    }

    /// How often the charge hit the limit (the kernel then reclaims, and kills if it cannot).
    pub fn limit_hits(&self) -> u64 {
        match self.version {
            Version::V1 => self.read("memory.failcnt"),
            Version::V2 => self.keyed("memory.events", "max"),
        }
    }

    /// Processes of the group the OOM killer killed.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            // `oom_kill` in memory.oom_control since Linux 4.13.
            Version::V1 => self.keyed("memory.oom_control", "oom_kill"),
            Version::V2 => self.keyed("memory.events", "oom_kill"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn write(&self, file: &str, value: u64) {
        if let Err(e) = std::fs::write(self.path(file), value.to_string()) {
            panic!("cannot write {value} to {}: {e}", self.path(file).display());
        }
    }

    fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.path(file).display()))
    }

    fn read(&self, file: &str) -> u64 {
        let text = self.text(file);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} holds {text:?}", self.path(file).display()))
    }

    /// The value of `key` in a file of `key value` lines; 0 when the kernel does not list it.
    fn keyed(&self, file: &str, key: &str) -> u64 {
        self.text(file)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    /// Removes the group once its processes are gone (the test's `ConsumerProcess`, dropped
    /// first, kills and reaps the consumer; the kernel may take a moment to let go of it).
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the memory cgroup {}", self.dir.display());
    }
}

/// The cgroup v2 mount whose root offers the memory controller, if any.
fn v2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            (fields.next()? == "cgroup2").then(|| PathBuf::from(target))
        })
        .find(|root| {
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
            let has_memory = controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            // A child gets memory.* files only when the root hands the controller down.
            has_memory
                && (std::fs::read_to_string(root.join("cgroup.subtree_control"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
                    || std::fs::write(root.join("cgroup.subtree_control"), "+memory").is_ok())
        })
}
