//! `batch_load`: batches a second through the consumer's `POST /events`, for `make bench`.
//!
//! ```text
//! batch_load --port P --connections N --seconds S [--batch B] [--gzip] [--run ID]
//! ```
//!
//! N threads, each on its own kept-alive connection to 127.0.0.1:P, post JSON arrays of B
//! events (default 100; the rows `write_paths` writes, each with its own idempotency key), with
//! `--gzip` compressed (`Content-Encoding: gzip`, flate2's default level), one request at a
//! time per connection, for S seconds; a request under way at the deadline is finished and
//! counted, so every event sent has been answered when the script counts rows. Bodies are made
//! before the clock starts, so the figure is the consumer's, not the client's JSON and gzip.
//!
//! The last line of stdout is what bench.sh keeps and bench_report reads:
//! `BATCH connections=N batch=B gzip=yes|no requests=R created=C not_2xx=X errors=E
//! window_s=W body_bytes=D wire_bytes=G p50_us= p99_us= max_us=` (created: results with
//! `"status":"created"` in 201 answers; body_bytes and wire_bytes: one request's JSON and what
//! was sent for it, averaged; latency: one request, first byte sent to last byte read).
//! The first error is printed to stderr. Exit status 1 when nothing was answered, 2 for bad
//! usage.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use lexopt::prelude::*;

use bench::stats::Latency;
use bench::{shapes, tool};

const USAGE: &str =
    "usage: batch_load --port P --connections N --seconds S [--batch B] [--gzip] [--run ID]";

/// One request's deadline on the socket: a stuck request is an error, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Bodies each connection cycles through: enough that the keys of a run never repeat (each
/// body's keys carry its own number, see [`body`]), made before the clock starts.
const BODIES: usize = 64;

#[derive(Debug, Clone)]
struct Args {
    port: u16,
    connections: usize,
    seconds: u64,
    batch: usize,
    gzip: bool,
    run: String,
}

#[derive(Debug, Default)]
struct Tally {
    micros: Vec<f64>,
    created: u64,
    not_2xx: u64,
    errors: u64,
    first_error: Option<String>,
    body_bytes: u64,
    wire_bytes: u64,
}

fn main() -> ExitCode {
    tool::main_of("batch_load", USAGE, parse_args, run)
}

fn run(args: &Args) -> Result<(), String> {
    let connections = (0..args.connections)
        .map(|_| connect(args.port))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let threads: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(connection, stream)| {
            let args = args.clone();
            thread::spawn(move || post_until(stream, &args, connection, deadline))
        })
        .collect();
    let mut all = Tally::default();
    for t in threads {
        let tally = t
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        all.micros.extend(tally.micros);
        all.created += tally.created;
        all.not_2xx += tally.not_2xx;
        all.errors += tally.errors;
        all.body_bytes += tally.body_bytes;
        all.wire_bytes += tally.wire_bytes;
        all.first_error = all.first_error.or(tally.first_error);
    }
    let window_s = started.elapsed().as_secs_f64();
    if let Some(e) = &all.first_error {
        eprintln!(
            "batch_load: first error of {}: {e}",
            all.errors + all.not_2xx
        );
    }
    let requests = all.micros.len() as u64;
    let per_request = |bytes: u64| bytes.checked_div(requests).unwrap_or(0);
    let (body_bytes, wire_bytes) = (per_request(all.body_bytes), per_request(all.wire_bytes));
    let latency = Latency::of_micros(all.micros)
        .ok_or_else(|| format!("no request was answered in {} s", args.seconds))?;
    println!(
        "BATCH connections={} batch={} gzip={} requests={requests} created={} not_2xx={} errors={} window_s={window_s:.3} body_bytes={body_bytes} wire_bytes={wire_bytes} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        args.connections,
        args.batch,
        if args.gzip { "yes" } else { "no" },
        all.created,
        all.not_2xx,
        all.errors,
        latency.p50_ms * 1000.0,
        latency.p99_ms * 1000.0,
        latency.max_ms * 1000.0
    );
    Ok(())
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

/// A JSON array of `batch` events, numbered from `first`.
fn body(args: &Args, connection: usize, first: u64) -> Vec<u8> {
    let items: Vec<serde_json::Value> = shapes::rows(&args.run, connection, first, args.batch)
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "event_type": r.event_type,
                "event_payload": r.event_payload,
                "idempotency_key": r.idempotency_key,
            })
        })
        .collect();
    serde_json::to_vec(&items).expect("JSON values serialize")
}

/// The request for one body: head and (compressed) body, and the JSON's length.
fn request(args: &Args, json: Vec<u8>) -> (Vec<u8>, u64) {
    let json_len = json.len() as u64;
    let (payload, coding) = if args.gzip {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&json).expect("writing to memory");
        (
            encoder.finish().expect("writing to memory"),
            "Content-Encoding: gzip\r\n",
        )
    } else {
        (json, "")
    };
    let mut wire = format!(
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n{coding}Content-Length: {}\r\n\r\n",
        args.port,
        payload.len()
    )
    .into_bytes();
    wire.extend_from_slice(&payload);
    (wire, json_len)
}

fn post_until(mut stream: TcpStream, args: &Args, connection: usize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    // Each body's events are numbered apart from every other's; after BODIES requests the
    // connection starts again with new numbers, made outside the timed request.
    let mut next_number = 0u64;
    let mut prepared: Vec<(Vec<u8>, u64)> = Vec::new();
    let make = |next_number: &mut u64| {
        let json = body(args, connection, *next_number);
        *next_number += args.batch as u64;
        request(args, json)
    };
    for _ in 0..BODIES {
        prepared.push(make(&mut next_number));
    }
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut sent = 0usize;
    while Instant::now() < deadline {
        if sent == prepared.len() {
            prepared.clear();
            for _ in 0..BODIES {
                prepared.push(make(&mut next_number));
            }
            sent = 0;
        }
        let (wire, json_len) = &prepared[sent];
        sent += 1;
        let begun = Instant::now();
        match exchange(&mut stream, wire, &mut buffer) {
            Ok((status, body)) => {
                tally.micros.push(begun.elapsed().as_secs_f64() * 1e6);
                tally.body_bytes += json_len;
                tally.wire_bytes += wire.len() as u64;
                if status == 201 {
                    tally.created += count(body, br#""status":"created""#);
                } else if status != 200 {
                    tally.not_2xx += 1;
                    tally.first_error.get_or_insert(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e.to_string());
                // The connection's state is unknown: start a new one.
                match connect(args.port) {
                    Ok(fresh) => stream = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    tally
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

/// Sends one request and reads its answer (status and body; Content-Length framing, as the
/// consumer answers every request).
fn exchange<'b>(
    stream: &mut TcpStream,
    wire: &[u8],
    buffer: &'b mut Vec<u8>,
) -> io::Result<(u16, &'b [u8])> {
    stream.write_all(wire)?;
    buffer.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the consumer closed the connection before answering",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| invalid("no Content-Length"))?;
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the consumer closed the connection within an answer",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok((status, &buffer[head_end..head_end + length]))
}

fn parse_args() -> Result<Args, String> {
    let mut parser = lexopt::Parser::from_env();
    let mut args = Args {
        port: 0,
        connections: 0,
        seconds: 0,
        batch: 100,
        gzip: false,
        run: format!("b{}", std::process::id()),
    };
    let (mut port, mut connections, mut seconds) = (false, false, false);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("port") => {
                args.port = tool::port(&tool::text(&mut parser)?)?;
                port = true;
            }
            Long("connections") => {
                args.connections = tool::positive("--connections", &tool::text(&mut parser)?)?;
                connections = true;
            }
            Long("seconds") => {
                args.seconds = tool::positive("--seconds", &tool::text(&mut parser)?)? as u64;
                seconds = true;
            }
            Long("batch") => args.batch = tool::positive("--batch", &tool::text(&mut parser)?)?,
            Long("gzip") => args.gzip = true,
            Long("run") => args.run = tool::text(&mut parser)?,
            other => return Err(other.unexpected().to_string()),
        }
    }
    for (given, flag) in [
        (port, "--port"),
        (connections, "--connections"),
        (seconds, "--seconds"),
    ] {
        if !given {
            return Err(format!("{flag} is required"));
        }
    }
    Ok(args)
}
