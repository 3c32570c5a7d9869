//! `null_http PORT`: a do-nothing HTTP/1.1 server, the round-trip reference of `make bench`.
//!
//! What a request costs on this machine when nothing is done with it: blocking std sockets, a
//! thread per connection, TCP_NODELAY (so no answer waits for Nagle and a delayed ACK),
//! keep-alive, the request head read up to its blank line and its Content-Length body read in
//! full, then a fixed small 201 JSON answer. The consumer's latency at one connection minus
//! this is what its own path (parsing, validation, the database) costs. It answers every
//! request alike and implements nothing else of HTTP (no chunked bodies, no pipelining
//! guarantees beyond reading in order); loopback only.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::ExitCode;

/// A body the size of the consumer's answer to a stored event.
const ANSWER: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{\"id\":1,\"received_at\":\"2026-01-01T00:00:00.000000Z\",\"dup\":false}";

/// Refuses heads longer than the consumer would accept: a broken client is cut off, not fed.
const MAX_HEAD_BYTES: usize = 16 * 1024;

fn main() -> ExitCode {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: null_http PORT (a free port on 127.0.0.1; 0 lets the OS pick)");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("null_http: cannot listen on 127.0.0.1:{port}: {e} (pick a free port)");
            return ExitCode::FAILURE;
        }
    };
    // The port, for a caller that passed 0.
    if let Ok(addr) = listener.local_addr() {
        println!("listening on {addr}");
    }
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
    ExitCode::SUCCESS
}

/// Answers requests on one connection until the client closes it or sends something broken.
fn serve(stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(body_len) = read_head(&mut reader) {
        if std::io::copy(&mut (&mut reader).take(body_len), &mut std::io::sink()).ok()
            != Some(body_len)
        {
            return;
        }
        if writer.write_all(ANSWER).is_err() {
            return;
        }
    }
}

/// Reads one request head; returns its Content-Length (0 when absent), or None at the end of
/// the connection or on a head that is too long or malformed.
fn read_head(reader: &mut impl BufRead) -> Option<u64> {
    let mut line = String::new();
    let mut head_bytes = 0;
    let mut body_len = 0;
    let mut started = false;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).ok()?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_HEAD_BYTES {
            return None;
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            // A blank line before the request line is tolerated (RFC 9112, 2.2).
            if started {
                return Some(body_len);
            }
            continue;
        }
        started = true;
        if let Some((name, value)) = text.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                body_len = value.trim().parse().ok()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_declares_its_body_length() {
        let text = std::str::from_utf8(ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }

    #[test]
    fn a_head_yields_its_content_length_and_the_body_stays_unread() {
        let mut input: &[u8] = b"POST /event HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET";
        assert_eq!(read_head(&mut input), Some(2));
        assert_eq!(input, b"{}GET");
        let mut end: &[u8] = b"";
        assert_eq!(read_head(&mut end), None);
    }
}
