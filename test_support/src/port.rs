//! Free TCP ports on loopback, for clusters and services that tests and scripts start.
//!
//! A port is picked at random below the kernel's range for outgoing connections
//! (`net.ipv4.ip_local_port_range`), never from it: a port the OS hands out for `:0` is in that
//! range, so any client socket may take it between our check and the server's bind, which made
//! runs fail now and then. A port counts as free when a listener can bind `127.0.0.1:port`
//! (that fails while anything listens on it, on 127.0.0.1 or on the wildcard). Ports handed out
//! by one process are remembered, so two callers in it never get the same one even before the
//! first has bound its port.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::Mutex;

use crate::error::HarnessError;

/// The lowest port picked: clear of the well-known and most registered service ports.
const LOWEST: u16 = 10_000;
/// Tries before giving up; with thousands of candidates, failing this often means none is free.
const TRIES: usize = 1_000;

/// A TCP port free on loopback. Panics with the reason when none is found (tests only).
pub fn free_port() -> u16 {
    free_ports(1).unwrap_or_else(|e| panic!("{e}"))[0]
}

/// `n` distinct free ports, none handed out before by this process.
pub fn free_ports(n: usize) -> Result<Vec<u16>, HarnessError> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let highest = ephemeral_low().saturating_sub(1);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..TRIES {
        if ports.len() == n {
            break;
        }
        let port = fastrand::u16(LOWEST..=highest);
        if !given.contains(&port) && port_is_free(port) {
            given.insert(port);
            ports.push(port);
        }
    }
    if ports.len() < n {
        return Err(HarnessError::NoFreePort { tried: TRIES });
    }
    Ok(ports)
}

/// Whether a server could listen on `port` on loopback: on 127.0.0.1, and on ::1 where this
/// machine has IPv6 (a server on `localhost` binds both).
pub fn port_is_free(port: u16) -> bool {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return false;
    }
    match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Ok(_) => true,
        // No IPv6 on loopback: nothing can listen there either.
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => true,
        Err(_) => false,
    }
}

/// The first port of the kernel's range for outgoing connections; Linux's default when the
/// file is missing or odd (another OS), and never so low that nothing is left below it.
fn ephemeral_low() -> u16 {
    const LINUX_DEFAULT: u16 = 32_768;
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&low| low > LOWEST + 1_000)
        .unwrap_or(LINUX_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_outgoing_range() {
        let ports = free_ports(20).unwrap();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 20, "{ports:?}");
        for port in ports {
            assert!((LOWEST..ephemeral_low()).contains(&port), "{port}");
        }
    }

    #[test]
    fn a_port_with_a_listener_is_not_free() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, free_port())).unwrap();
        assert!(!port_is_free(listener.local_addr().unwrap().port()));
    }
}
