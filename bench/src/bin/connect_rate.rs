//! `connect_rate`: new connections a second against the consumer, for `make bench`.
//!
//! ```text
//! connect_rate --port P --connections N --seconds S [--ca FILE]
//! ```
//!
//! N threads, each in a loop for S seconds: connect to 127.0.0.1:P, with `--ca` a full TLS
//! handshake (rustls with the ring provider, as the consumer and the propagator use; the
//! server's certificate checked against FILE for the name `localhost`; session resumption
//! off, so every connection pays the whole handshake), then `GET /healthz` with
//! `Connection: close`, the answer read to the server's close. Without `--ca` the same over
//! plain TCP: what a new connection costs the consumer without TLS (a thread, the accept), the
//! reference the TLS figure is read against.
//!
//! The last line of stdout is what bench.sh keeps and bench_report reads:
//! `CONNECT mode=tls|plain connections=N completed=C errors=E window_s=W p50_us= p99_us= max_us=`
//! (completed: connections that got a 200 and the server's close; latency: connect to close).
//! The first error is printed to stderr. Exit status 1 when nothing completed, 2 for bad usage.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use bench::stats::Latency;
use bench::tool;

const USAGE: &str = "usage: connect_rate --port P --connections N --seconds S [--ca FILE]";

/// The request each connection makes: no body and no database work, so the figure is about
/// the connection (and its handshake), not storage.
const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// One attempt's deadline on the socket: a stuck connection is an error, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Args {
    port: u16,
    connections: usize,
    seconds: u64,
    ca: Option<PathBuf>,
}

/// What one thread measured.
#[derive(Debug, Default)]
struct Tally {
    micros: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

fn main() -> ExitCode {
    tool::main_of("connect_rate", USAGE, parse_args, run)
}

fn run(args: &Args) -> Result<(), String> {
    let tls = match &args.ca {
        Some(ca) => Some(client_config(ca)?),
        None => None,
    };
    let mode = if tls.is_some() { "tls" } else { "plain" };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let threads: Vec<_> = (0..args.connections)
        .map(|_| {
            let tls = tls.clone();
            let port = args.port;
            thread::spawn(move || connect_until(port, tls.as_ref(), deadline))
        })
        .collect();
    let mut all = Tally::default();
    for t in threads {
        let tally = t
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        all.micros.extend(tally.micros);
        all.errors += tally.errors;
        all.first_error = all.first_error.or(tally.first_error);
    }
    // The window ends when the last connection begun before the deadline has finished.
    let window_s = started.elapsed().as_secs_f64();
    if let Some(e) = &all.first_error {
        eprintln!("connect_rate: first error of {}: {e}", all.errors);
    }
    let completed = all.micros.len();
    let latency = Latency::of_micros(all.micros)
        .ok_or_else(|| format!("no connection completed in {} s", args.seconds))?;
    println!(
        "CONNECT mode={mode} connections={} completed={completed} errors={} window_s={window_s:.3} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        args.connections,
        all.errors,
        latency.p50_ms * 1000.0,
        latency.p99_ms * 1000.0,
        latency.max_ms * 1000.0
    );
    Ok(())
}

fn client_config(ca: &std::path::Path) -> Result<Arc<ClientConfig>, String> {
    let roots = common::tls::read_root_store("--ca", ca).map_err(|e| e.to_string())?;
    let mut config = ClientConfig::builder_with_provider(common::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed one would measure a cheaper path than a
    // propagator's first connection, and the consumer's figure to compare is the full one.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

fn connect_until(port: u16, tls: Option<&Arc<ClientConfig>>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let begun = Instant::now();
        match one_connection(port, tls) {
            Ok(()) => tally.micros.push(begun.elapsed().as_secs_f64() * 1e6),
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
    tally
}

/// Connect, (handshake,) ask, read the answer to the close; Err says which step failed.
fn one_connection(port: u16, tls: Option<&Arc<ClientConfig>>) -> Result<(), String> {
    let tcp =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("timeouts: {e}"))?;
    let answer = match tls {
        None => exchange(tcp)?,
        Some(config) => {
            let name = ServerName::try_from("localhost").expect("a valid DNS name");
            let conn =
                ClientConnection::new(Arc::clone(config), name).map_err(|e| format!("tls: {e}"))?;
            exchange(StreamOwned::new(conn, tcp))?
        }
    };
    if answer.starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
        Err(format!(
            "answer: `{}`, not 200",
            String::from_utf8_lossy(line)
        ))
    }
}

/// Writes the request (the TLS handshake happens on the first write) and reads to the close.
/// A close without TLS's close_notify after a complete answer counts as a close: the answer
/// says `Connection: close` and its length, and this tool only checks its status line.
fn exchange(mut stream: impl Read + Write) -> Result<Vec<u8>, String> {
    stream
        .write_all(REQUEST)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("handshake or request: {e}"))?;
    let mut answer = Vec::with_capacity(512);
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && complete(&answer) => Ok(answer),
        Err(e) => Err(format!("reading the answer: {e}")),
    }
}

/// Whether `answer` holds a whole head and as many body bytes as its Content-Length says.
fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|n| answer.len() == end + 4 + n)
}

fn parse_args() -> Result<Args, String> {
    let mut parser = lexopt::Parser::from_env();
    let (mut port, mut connections, mut seconds, mut ca) = (None, None, None, None);
    let text = |parser: &mut lexopt::Parser| -> Result<String, String> {
        parser
            .value()
            .map_err(|e| e.to_string())?
            .string()
            .map_err(|e| e.to_string())
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("port") => {
                let v = text(&mut parser)?;
                port = Some(v.parse().map_err(|_| format!("--port {v}: not a port"))?);
            }
            Long("connections") => {
                let v = text(&mut parser)?;
                connections = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or(format!("--connections {v}: not a positive number"))?,
                );
            }
            Long("seconds") => {
                let v = text(&mut parser)?;
                seconds = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &u64| n > 0)
                        .ok_or(format!("--seconds {v}: not a positive number"))?,
                );
            }
            Long("ca") => ca = Some(PathBuf::from(text(&mut parser)?)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Args {
        port: port.ok_or("--port is required")?,
        connections: connections.ok_or("--connections is required")?,
        seconds: seconds.ok_or("--seconds is required")?,
        ca,
    })
}
