//! Tests of the connection, kept beside it so that file stays one concept.

use super::*;
use crate::http::{Method, OnAnswer};
use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::sync::mpsc;
use std::thread;

fn limits() -> Limits {
    Limits::for_tests()
}

fn unlimited() -> Arc<BodyBudget> {
    Arc::new(BodyBudget::unlimited())
}

/// What the test server saw on a connection.
#[derive(Debug, PartialEq)]
enum Seen {
    Request { path: String, body_len: usize },
    Closed,
    Rejected(u16),
    Io,
}

#[test]
fn settling_waits_for_the_awaited_answer_and_wakes_when_another_thread_sends_it() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let connection = Connection::new(server, limits(), unlimited());
    let writer = Arc::clone(connection.writer());
    writer.await_answer(OnAnswer::new(|_| {}));
    let (settled_tx, settled) = mpsc::channel();
    let settler = thread::spawn(move || {
        let result = connection.settle();
        settled_tx.send(()).expect("the test waits");
        result
    });
    // The connection's thread must still be waiting: nothing has been sent.
    assert!(
        settled.recv_timeout(Duration::from_millis(50)).is_err(),
        "settle returned before the awaited answer was sent"
    );
    let framing = ResponseFraming {
        keep_alive: true,
        http10: false,
        head_only: false,
    };
    writer.send_awaited(&Response::json(Status::Created, b"{}".to_vec()), framing);
    settled
        .recv_timeout(Duration::from_secs(10))
        .expect("settle was not woken by the awaited answer");
    settler.join().unwrap().expect("settled without error");
    let mut head = [0u8; 12];
    client.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 201");
}

#[test]
fn an_awaited_answer_never_blocks_on_a_client_that_does_not_read_and_all_arrive_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let connection = Connection::new(server, limits(), unlimited());
    let framing = ResponseFraming {
        keep_alive: true,
        http10: false,
        head_only: false,
    };
    // The client reads nothing while 16 MiB of answers are sent: far more than the socket
    // buffers hold, so the borrowed sends must give up rather than wait.
    let answers = 64;
    let writer = Arc::clone(connection.writer());
    let sender = thread::spawn(move || {
        for i in 0..answers {
            let body = vec![b'a' + (i % 26) as u8; 256 * 1024];
            let response = Response::json(Status::Ok, body);
            writer.await_answer(OnAnswer::new(|_| {}));
            let started = Instant::now();
            writer.send_awaited(&response, framing);
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "send {i} blocked"
            );
        }
    });
    sender.join().expect("the borrowed sends return");
    // The connection's thread writes the rest (blocking) while the client reads it all.
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match client.read(&mut chunk) {
                Ok(0) | Err(_) => break all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    });
    connection.writer().close().expect("the rest is written");
    let all = reader.join().unwrap();
    let mut rest = &all[..];
    for i in 0..answers {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(rest).expect("a response") else {
            panic!("answer {i} is cut short");
        };
        let body = &rest[head..head + 256 * 1024];
        assert!(
            body.iter().all(|&b| b == b'a' + (i % 26) as u8),
            "answer {i} is out of order or mixed with another"
        );
        rest = &rest[head + 256 * 1024..];
    }
    assert!(
        rest.is_empty(),
        "{} bytes more than the answers",
        rest.len()
    );
}

/// A server on 127.0.0.1:0 serving every connection with `Connection` in a loop: each
/// request is answered 200 with the path and the body length. Threads are left to end
/// with the test process.
fn spawn_server(limits: Limits) -> (SocketAddr, mpsc::Receiver<Seen>) {
    spawn_server_with(limits, unlimited())
}

/// [`spawn_server`] with every connection sharing `budget`.
fn spawn_server_with(
    limits: Limits,
    budget: Arc<BodyBudget>,
) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("listener address");
    let (seen, events) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (limits, seen) = (limits.clone(), seen.clone());
            let budget = Arc::clone(&budget);
            thread::spawn(move || serve(Connection::new(stream, limits, budget), seen));
        }
    });
    (addr, events)
}

fn serve(mut connection: Connection, seen: mpsc::Sender<Seen>) {
    loop {
        match connection.read_request(&|_| None) {
            Ok(request) => {
                let body =
                    serde_json::json!({"path": request.path, "body_len": request.body.len()});
                let response = Response::json(Status::Ok, body.to_string().into_bytes());
                let _ = seen.send(Seen::Request {
                    path: request.path.clone(),
                    body_len: request.body.len(),
                });
                let head_only = request.method == Method::Head;
                let framing = ResponseFraming {
                    keep_alive: request.keep_alive,
                    http10: request.http10,
                    head_only,
                };
                if connection.write_response(&response, framing).is_err() {
                    return;
                }
                if !request.keep_alive {
                    connection.linger_close();
                    return;
                }
            }
            Err(ReadError::Closed) => {
                let _ = seen.send(Seen::Closed);
                return;
            }
            Err(ReadError::Reject(rejection)) => {
                let _ = seen.send(Seen::Rejected(rejection.response.status.code()));
                connection.reject_and_close(&rejection.response);
                return;
            }
            Err(ReadError::Io(_)) | Err(ReadError::Tls(_)) => {
                let _ = seen.send(Seen::Io);
                return;
            }
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the test server answers JSON")
    }
}

/// A raw-socket client that reads responses one by one, keeping extra bytes.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        // A safety net so a broken server fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a client timeout");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("send to the test server");
    }

    /// Reads more bytes; false at the end of the stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = self
            .stream
            .read(&mut chunk)
            .expect("read from the test server");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `head` for an answer to HEAD, which has no body.
    fn reply(&mut self, head: bool) -> Reply {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) =
                response.parse(&self.buf).expect("a well-formed response")
            {
                let status = response.code.expect("a status");
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().expect("a numeric Content-Length"));
                let length = if head || status == 100 { 0 } else { length };
                while self.buf.len() < head_len + length {
                    assert!(self.fill(), "connection closed inside a response body");
                }
                let body = self.buf[head_len..head_len + length].to_vec();
                self.buf.drain(..head_len + length);
                return Reply {
                    status,
                    headers,
                    body,
                };
            }
            assert!(self.fill(), "connection closed before a complete response");
        }
    }

    /// True when the server closed the connection (after any buffered responses).
    fn closed_by_server(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

#[test]
fn answers_pipelined_requests_in_order() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(
        b"GET /one HTTP/1.1\r\n\r\n\
          POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
          POST /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n\
          HEAD /four HTTP/1.1\r\n\r\n\
          GET /five HTTP/1.1\r\n\r\n",
    );
    for (path, body_len, head) in [
        ("/one", 0, false),
        ("/two", 3, false),
        ("/three", 4, false),
        ("/four", 0, true),
        ("/five", 0, false),
    ] {
        let reply = client.reply(head);
        assert_eq!(reply.status, 200, "{path}");
        if head {
            assert!(reply.body.is_empty(), "HEAD gets no body");
            assert_ne!(
                reply.header("Content-Length"),
                Some("0"),
                "HEAD keeps the length"
            );
        } else {
            assert_eq!(
                reply.json(),
                serde_json::json!({"path": path, "body_len": body_len}),
                "answers arrive in request order"
            );
        }
        assert!(reply.header("Date").is_some());
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
    }
}

#[test]
fn reads_a_body_that_arrives_in_pieces() {
    let (addr, events) = spawn_server(limits());
    let mut client = Client::connect(addr);
    let parts: [&[u8]; 6] = [
        b"POST /trickle HTTP/1.1\r\nTransfer-",
        b"Encoding: chunked\r\n\r",
        b"\n3\r",
        b"\nabc\r\n1",
        b"0\r\n0123456789abcdef\r\n0\r\n",
        b"\r\n",
    ];
    for part in parts {
        client.send(part);
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.reply(false).status, 200);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).ok(),
        Some(Seen::Request {
            path: "/trickle".into(),
            body_len: 19
        })
    );
}

#[test]
fn cuts_off_a_client_that_sends_half_a_head_and_stalls() {
    let (addr, events) = spawn_server(limits());
    let mut client = Client::connect(addr);
    let started = Instant::now();
    client.send(b"POST /event HTTP/1.1\r\nContent-Le");
    let reply = client.reply(false);
    let waited = started.elapsed();
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "cut off after {waited:?}, read_timeout is 300 ms"
    );
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).ok(),
        Some(Seen::Rejected(408))
    );
    assert!(client.closed_by_server());
}

#[test]
fn cuts_off_a_client_that_drips_a_head_at_the_absolute_deadline() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    let started = Instant::now();
    // One byte every 50 ms never lets a per-read timeout expire; the deadline still does.
    let mut writer = client.stream.try_clone().expect("clone the client socket");
    let dripper = thread::spawn(move || {
        for byte in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if writer.write_all(std::slice::from_ref(byte)).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let reply = client.reply(false);
    let waited = started.elapsed();
    assert_eq!(reply.status, 408);
    assert!(
        waited < Duration::from_millis(1500),
        "the head deadline is absolute, cut off after {waited:?}"
    );
    let _ = dripper.join();
}

#[test]
fn cuts_off_a_body_that_stalls() {
    let (addr, events) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"POST /event HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(client.reply(false).status, 408);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).ok(),
        Some(Seen::Rejected(408))
    );
}

#[test]
fn sends_100_continue_before_reading_the_body() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"POST /event HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = client.reply(false);
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    let reply = client.reply(false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 5);
}

#[test]
fn skips_100_continue_when_the_body_is_already_on_its_way() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"POST /event HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello");
    let reply = client.reply(false);
    assert_eq!(reply.status, 200, "no 100 before the final answer");
}

#[test]
fn refuses_an_oversized_expect_100_continue_with_413_and_no_100() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"POST /event HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    let reply = client.reply(false);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("Connection"), Some("close"));
}

#[test]
fn delivers_413_for_a_huge_content_length_while_the_client_keeps_sending() {
    let (addr, events) = spawn_server(limits());
    let mut client = Client::connect(addr);
    // The head and the start of the body leave in one write, so the server has unread
    // input when it answers.
    let mut first = b"POST /event HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n".to_vec();
    first.resize(first.len() + 64 * 1024, b'x');
    client.send(&first);
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).ok(),
        Some(Seen::Rejected(413))
    );
    thread::sleep(Duration::from_millis(100));
    // The server has answered; the client, not reading yet, keeps sending its body. Had
    // the server closed with unread input, the kernel would have sent a reset and these
    // writes would fail with ECONNRESET or EPIPE, as they do for real clients.
    let junk = vec![b'x'; 16 * 1024];
    for _ in 0..16 {
        client.send(&junk);
    }
    let reply = client.reply(false);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn closes_an_idle_keep_alive_connection_after_the_idle_timeout() {
    let (addr, events) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(client.reply(false).status, 200);
    let idle_since = Instant::now();
    assert!(client.closed_by_server());
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "closed after {idle:?} idle, idle_timeout is 300 ms"
    );
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(5)),
        Ok(Seen::Request { .. })
    ));
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)).ok(),
        Some(Seen::Closed),
        "an idle timeout is a quiet close, not a 408"
    );
}

#[test]
fn honours_connection_close() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
    let reply = client.reply(false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed_by_server(), "nothing is answered after close");
}

#[test]
fn keeps_an_http10_client_alive_only_when_it_asks() {
    let (addr, _) = spawn_server(limits());
    let mut client = Client::connect(addr);
    client.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let reply = client.reply(false);
    assert_eq!(reply.header("Connection"), Some("keep-alive"));
    client.send(b"GET /b HTTP/1.0\r\n\r\n");
    let reply = client.reply(false);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn a_shutdown_handle_wakes_an_idle_read() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let _client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (stream, _) = listener.accept().expect("accept");
    let mut connection = Connection::new(
        stream,
        Limits {
            idle_timeout: Duration::from_secs(30),
            ..limits()
        },
        unlimited(),
    );
    assert!(connection.peer_addr().is_some());
    let handle = connection.shutdown_handle().expect("clone the socket");
    let reader = thread::spawn(move || {
        let started = Instant::now();
        let closed = matches!(connection.read_request(&|_| None), Err(ReadError::Closed));
        (closed, started.elapsed())
    });
    thread::sleep(Duration::from_millis(100));
    handle
        .shutdown(Shutdown::Both)
        .expect("shut the socket down");
    let (closed, waited) = reader.join().expect("the reader does not panic");
    assert!(closed, "an idle read ends as Closed");
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
}

#[test]
fn a_body_that_finds_no_room_in_the_budget_gets_503_and_the_next_fits_once_it_is_given_back() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_batch_bytes: 64 * 1024,
        read_timeout: Duration::from_secs(10),
        ..limits()
    };
    let budget = Arc::new(BodyBudget::new(10_000));
    let (addr, _) = spawn_server_with(limits, Arc::clone(&budget));
    let head = b"POST /event HTTP/1.1\r\nContent-Length: 8000\r\n\r\n";
    let mut holder = Client::connect(addr);
    holder.send(head);
    holder.send(&[b'a'; 100]);
    // The holder's body is reserved before it is read: wait until it is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while budget.reserved() < 8000 {
        assert!(
            Instant::now() < deadline,
            "the first body was never reserved"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let mut refused = Client::connect(addr);
    refused.send(head);
    let reply = refused.reply(false);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(refused.closed_by_server());

    holder.send(&[b'a'; 7900]);
    let reply = holder.reply(false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 8000);
    // Given back once the connection asks for its next request.
    let mut next = Client::connect(addr);
    next.send(head);
    next.send(&[b'b'; 8000]);
    assert_eq!(
        next.reply(false).status,
        200,
        "room again after the first body"
    );
    drop(holder);
    drop(next);
    let deadline = Instant::now() + Duration::from_secs(10);
    while budget.reserved() > 0 {
        assert!(Instant::now() < deadline, "the budget was not given back");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_head_refused_by_admit_is_answered_before_its_body_and_the_connection_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let mut client = Client::connect(listener.local_addr().expect("address"));
    let (stream, _) = listener.accept().expect("accept");
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_batch_bytes: 64 * 1024,
        ..limits()
    };
    let budget = unlimited();
    let mut connection = Connection::new(stream, limits, Arc::clone(&budget));
    client.send(b"POST /event HTTP/1.1\r\nContent-Length: 60000\r\n\r\n");
    let refuse = |head: RequestHead<'_>| {
        (head.authorization.is_none()).then(|| Response::error(Status::Unauthorized, "no"))
    };
    let Err(ReadError::Reject(rejection)) = connection.read_request(&refuse) else {
        panic!("the head was not refused");
    };
    assert_eq!(rejection.path.as_deref(), Some("/event"));
    assert_eq!(budget.reserved(), 0, "nothing reserved for a refused head");
    connection.reject_and_close(&rejection.response);
    assert_eq!(client.reply(false).status, 401);
    assert!(client.closed_by_server());
}
