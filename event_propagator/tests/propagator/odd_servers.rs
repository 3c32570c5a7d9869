//! Servers that are not quite the consumer, in front of it or instead of it: a rate limiter or a
//! maintenance page asking for an hour's wait, proxies and login pages answering 2xx without
//! the consumer's answer, a redirect, a consumer that never answers. Each test runs the built
//! binary, since what it checks is what an operator reads: the log lines and the summary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;

/// Every run here ends in well under a second unless a wait is not bounded.
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_retry_after_of_an_hour_is_capped_to_backoff_max_and_the_cap_is_logged() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, n| match n {
        0 => Reply::status(503).header("Retry-After", "3600"),
        _ => Reply::status(201),
    });
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 0, "{stderr}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "{stderr}");
    let gap = requests[1].at - requests[0].at;
    // backoff_max_seconds is 0.05 in the test config: far below an hour, generous for the box.
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
    assert!(
        stderr.contains("Retry-After 3600 s capped to 0.05 s (backoff_max_seconds)"),
        "{stderr}"
    );
}

/// A server that answers request `n` with the raw bytes `answers[n]` (the last one for any
/// later request) and closes the connection: what no well-behaved test receiver sends, a 204
/// without a Content-Type, a body delimited by the close.
struct RawServer {
    url: String,
    answered: Arc<AtomicUsize>,
}

impl RawServer {
    fn start(answers: Vec<String>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/event", listener.local_addr().unwrap());
        let answered = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&answered);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if read_request(&mut stream).is_err() {
                    continue;
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let answer = &answers[n.min(answers.len() - 1)];
                let _ = stream.write_all(answer.as_bytes());
                // Dropping the stream closes it: the end of a close-delimited body.
            }
        });
        RawServer { url, answered }
    }
}

/// Reads one request (head and a Content-Length body) and discards it.
fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)
}

/// The lines of `stderr` that are warnings.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("WARN")).collect()
}

#[test]
fn an_empty_200_a_204_an_html_201_and_a_close_delimited_200_are_unconfirmed_with_one_warning() {
    let dir = TempDir::new();
    let page = "<html><body><form>Sign in</form></body></html>";
    let server = RawServer::start(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
        "HTTP/1.1 204 No Content\r\n\r\n".into(),
        format!(
            "HTTP/1.1 201 Created\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        ),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok".into(),
    ]);
    write_config(&dir, &server.url, "");
    // One at a time, so the answers come in the order above and the first is the empty 200.
    let (code, stderr) = run_binary(&dir, &["--count", "4", "--max-in-flight", "1"], LIMIT);
    assert_eq!(server.answered.load(Ordering::SeqCst), 4, "{stderr}");
    assert_eq!(code, 1, "nothing is confirmed stored: {stderr}");
    let summary = summary_line(&stderr);
    assert!(summary.contains(" delivered=0 "), "{summary}");
    assert!(summary.ends_with(" unconfirmed=4"), "{summary}");
    let warnings = warnings(&stderr);
    assert_eq!(warnings.len(), 1, "one warning per run: {stderr}");
    for needle in [
        server.url.as_str(),
        "200 OK",
        "no Content-Type, empty body",
        "not the consumer's answer",
        "unconfirmed",
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {stderr}");
    }
}

#[test]
fn a_login_page_answering_a_batch_is_named_in_the_warning_and_its_events_unconfirmed() {
    let dir = TempDir::new();
    let page = "<html>\r\n<title>Sign in</title>\r\n</html>";
    let server = RawServer::start(vec![format!(
        "HTTP/1.1 201 Created\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    )]);
    write_config(&dir, &server.url, "");
    let (code, stderr) = run_binary(&dir, &["--count", "2", "--batch-size", "3"], LIMIT);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        summary_line(&stderr).ends_with(" unconfirmed=6"),
        "{stderr}"
    );
    let warnings = warnings(&stderr);
    assert_eq!(warnings.len(), 1, "{stderr}");
    let batch_url = server.url.replace("/event", "/events");
    for needle in [
        batch_url.as_str(),
        "batch of 3 events",
        "201 Created",
        "Content-Type `text/html`",
        r#""<html>\r\n<title>Sign in</title>\r\n</html>""#,
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {stderr}");
    }
}

#[test]
fn a_request_timeout_is_named_by_its_key_and_value() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| Reply::status(201).after(Duration::from_secs(2)));
    write_config(&dir, &receiver.url(), "  request_timeout_seconds: 0.3\n");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "given up after 4 attempt(s): no answer within request_timeout_seconds (0.3 s)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("timeout: global"), "{stderr}");
}

#[test]
fn a_redirect_is_rejected_naming_its_location() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| {
        Reply::status(307).header("Location", "http://elsewhere.example:8080/event")
    });
    write_config(&dir, &receiver.url(), "");
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(receiver.requests().len(), 1, "not retried, not followed");
    assert!(
        stderr.contains("rejected with 307: a redirect, not followed")
            && stderr.contains("Location: http://elsewhere.example:8080/event"),
        "{stderr}"
    );
}

/// A DNS server that reads queries and never answers, on port 53 of a loopback address (only
/// root may bind it).
fn silent_dns_server() -> Option<std::net::UdpSocket> {
    match std::net::UdpSocket::bind("127.83.0.1:53") {
        Ok(socket) => Some(socket),
        Err(e) => {
            let why = format!("cannot bind a silent DNS server on 127.83.0.1:53 ({e})");
            test_support::privileged::unavailable("the hanging name lookup", why);
            None
        }
    }
}

#[test]
fn a_name_lookup_that_hangs_is_reported_as_one() {
    let dir = TempDir::new();
    let Some(_dns) = silent_dns_server() else {
        return;
    };
    // The binary runs in a mount namespace of its own whose /etc/resolv.conf names the silent
    // server: the rest of the machine keeps its resolver.
    let resolv = dir.write("resolv.conf", "nameserver 127.83.0.1\noptions timeout:30\n");
    write_config(
        &dir,
        "http://consumer.hangs.example:8080/event",
        "  request_timeout_seconds: 0.5\n",
    );
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec {} --count 1",
        resolv.display(),
        env!("CARGO_BIN_EXE_event_propagator")
    );
    // The environment of `propagator()`, around `unshare`.
    let mut unshare = std::process::Command::new("unshare");
    unshare
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .current_dir(dir.path())
        .env("LOG_LEVEL", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = match unshare.spawn() {
        Ok(child) => child,
        Err(e) => {
            let why = format!("cannot run unshare ({e})");
            test_support::privileged::unavailable("the hanging name lookup", why);
            return;
        }
    };
    let (status, stderr) = wait_with_timeout(child, LIMIT);
    if stderr.contains("unshare:") || stderr.contains("mount:") {
        let why = format!("no mount namespace here: {stderr}");
        test_support::privileged::unavailable("the hanging name lookup", why);
        return;
    }
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the name lookup of consumer.hangs.example hung: no address within 0.5 s"),
        "{stderr}"
    );
}
