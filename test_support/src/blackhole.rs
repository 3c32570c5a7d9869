//! A silent partition on loopback: packet filter rules (iptables, as root) that drop the TCP
//! segments to or from one port, so that an end sees a peer that stopped answering: no reset,
//! no refusal, as when a link or a host dies. Each direction is a guard of its own, so that a
//! test can lose only the answers first (a request that arrives and whose answer never
//! does). Removed on drop; `scripts/test.sh` removes any a killed test left (they carry
//! [`COMMENT`]).

use std::process::Command;

use crate::privileged;

/// Marks the rules of a test run, so that leftovers can be found and removed.
pub const COMMENT: &str = "events-test-blackhole";

/// One rule in place until dropped: segments of one direction of one port are dropped.
#[derive(Debug)]
pub struct Blackhole {
    port: u16,
    direction: &'static str,
}

impl Blackhole {
    /// Drops every segment sent to `port` (requests, and the acknowledgements of answers).
    pub fn to_port(port: u16) -> Option<Blackhole> {
        Blackhole::insert(port, "--dport")
    }

    /// Drops every segment sent from `port` (answers, and the acknowledgements of requests).
    pub fn from_port(port: u16) -> Option<Blackhole> {
        Blackhole::insert(port, "--sport")
    }

    /// `None` where iptables cannot be run (see [`privileged::unavailable`]).
    fn insert(port: u16, direction: &'static str) -> Option<Blackhole> {
        match iptables("-I", direction, port) {
            Ok(()) => Some(Blackhole { port, direction }),
            Err(why) => {
                privileged::unavailable("a silent partition (iptables DROP)", why);
                None
            }
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        if let Err(why) = iptables("-D", self.direction, self.port) {
            eprintln!("{why}: remove the rule by hand (iptables -S INPUT | grep {COMMENT})");
        }
    }
}

/// `iptables <action> INPUT` for segments on loopback whose `direction` port is `port`.
fn iptables(action: &str, direction: &str, port: u16) -> Result<(), String> {
    let port = port.to_string();
    let output = Command::new("iptables")
        .args([
            "-w", action, "INPUT", "-i", "lo", "-p", "tcp", direction, &port,
        ])
        .args(["-m", "comment", "--comment", COMMENT, "-j", "DROP"])
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {action} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
