//! Properties of the HTTP request framer: `parse_request` is total, generated valid requests
//! round-trip, and the socket path (`Connection`) frames a stream the same way whatever the
//! packet boundaries.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use event_consumer::http::{parse_request, BodyBudget, Connection, Limits, Method};
use proptest::prelude::*;

/// Small limits, so that generated inputs also reach the 413 and 431 paths.
fn small_limits() -> Limits {
    Limits {
        max_head_bytes: 512,
        max_headers: 8,
        max_body_bytes: 256,
        max_batch_bytes: 256,
        read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
    }
}

/// Bytes that look like the start of a request, then anything: plain random bytes rarely get
/// past the request line.
fn request_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(b"".to_vec()),
        Just(b"POST /event HTTP/1.1\r\n".to_vec()),
        Just(b"POST /event HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
        Just(b"GET / HTTP/1.0\r\nContent-Length: ".to_vec()),
    ];
    let piece = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b": ".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"ffffffff\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    (prefix, prop::collection::vec(piece, 0..24)).prop_map(|(mut bytes, pieces)| {
        bytes.extend(pieces.concat());
        bytes
    })
}

fn check_total(bytes: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    match parse_request(bytes, limits) {
        Ok(None) => {}
        Ok(Some((request, consumed))) => {
            prop_assert!(consumed > 0 && consumed <= bytes.len());
            prop_assert!(request.body.len() <= limits.max_body_bytes);
        }
        Err(rejection) => {
            let status = rejection.response.status.code();
            prop_assert!(
                (400..500).contains(&status) || status == 505,
                "refused with {}",
                status
            )
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_give_a_request_need_more_or_a_clean_refusal(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_total(&bytes, &Limits::default())?;
        check_total(&bytes, &small_limits())?;
    }

    #[test]
    fn request_like_bytes_give_a_request_need_more_or_a_clean_refusal(bytes in request_like_bytes()) {
        check_total(&bytes, &Limits::default())?;
        check_total(&bytes, &small_limits())?;
    }
}

/// A valid request and what parsing it must give back.
#[derive(Debug, Clone)]
struct Generated {
    raw: Vec<u8>,
    method: Method,
    path: String,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    body: Vec<u8>,
    keep_alive: bool,
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A header the parser does not interpret.
fn other_header() -> impl Strategy<Value = (String, String)> {
    let name = token().prop_filter("a header the parser interprets", |n| {
        ![
            "content-length",
            "transfer-encoding",
            "connection",
            "expect",
            "content-type",
            "authorization",
            "idempotency-key",
        ]
        .contains(&n.to_ascii_lowercase().as_str())
    });
    // Visible ASCII with inner spaces; leading and trailing whitespace is not part of a value.
    let value = "([!-~]([ !-~]{0,20}[!-~])?)?";
    (name, value)
}

fn method() -> impl Strategy<Value = (&'static str, Method)> {
    prop_oneof![
        Just(("GET", Method::Get)),
        Just(("HEAD", Method::Head)),
        Just(("POST", Method::Post)),
        Just(("PUT", Method::Other)),
        Just(("DELETE", Method::Other)),
        Just(("PATCH", Method::Other)),
    ]
}

fn generated_request() -> impl Strategy<Value = Generated> {
    (
        method(),
        "(/[a-z0-9._~-]{0,10}){1,3}",
        prop::option::of("[a-z0-9=&]{0,12}"),
        any::<bool>(),
        prop::collection::vec(other_header(), 0..6),
        prop::option::of("[!-~]{1,40}"),
        prop::option::of("[!-~]{1,40}"),
        prop::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
        prop::collection::vec(1usize..700, 0..8),
        prop::collection::vec(other_header(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(
                (method_token, method),
                path,
                query,
                http10,
                headers,
                content_type,
                idempotency_key,
                body,
                chunked,
                cuts,
                trailers,
                close,
            )| {
                // Chunked framing is HTTP/1.1 only.
                let http10 = http10 && !chunked;
                let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
                let target = match &query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                };
                let mut raw = format!("{method_token} {target} {version}\r\n").into_bytes();
                for (name, value) in &headers {
                    raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
                if let Some(v) = &content_type {
                    raw.extend_from_slice(format!("Content-Type: {v}\r\n").as_bytes());
                }
                if let Some(v) = &idempotency_key {
                    raw.extend_from_slice(format!("Idempotency-Key: {v}\r\n").as_bytes());
                }
                let keep_alive = match (http10, close) {
                    (false, true) => {
                        raw.extend_from_slice(b"Connection: close\r\n");
                        false
                    }
                    (false, false) => true,
                    (true, true) => {
                        raw.extend_from_slice(b"Connection: keep-alive\r\n");
                        true
                    }
                    (true, false) => false,
                };
                if chunked {
                    raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut rest = &body[..];
                    for (i, cut) in cuts.iter().enumerate() {
                        if rest.is_empty() {
                            break;
                        }
                        let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                        let ext = if i % 2 == 1 { ";name=value" } else { "" };
                        raw.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
                        raw.extend_from_slice(chunk);
                        raw.extend_from_slice(b"\r\n");
                        rest = tail;
                    }
                    if !rest.is_empty() {
                        raw.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
                        raw.extend_from_slice(rest);
                        raw.extend_from_slice(b"\r\n");
                    }
                    raw.extend_from_slice(b"0\r\n");
                    for (name, value) in &trailers {
                        raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                    }
                    raw.extend_from_slice(b"\r\n");
                } else {
                    raw.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    raw.extend_from_slice(&body);
                }
                Generated {
                    raw,
                    method,
                    path,
                    content_type,
                    idempotency_key,
                    body,
                    keep_alive,
                }
            },
        )
}

fn assert_matches(
    request: &event_consumer::http::Request,
    expected: &Generated,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(request.method, expected.method);
    prop_assert_eq!(&request.path, &expected.path);
    prop_assert_eq!(&request.content_type, &expected.content_type);
    prop_assert_eq!(&request.idempotency_key, &expected.idempotency_key);
    prop_assert_eq!(&request.body, &expected.body);
    prop_assert_eq!(request.keep_alive, expected.keep_alive);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_valid_request_round_trips_and_consumes_exactly_its_bytes(
        generated in generated_request(),
        next in prop::collection::vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let limits = Limits::default();
        // The bytes of a following (pipelined) request do not change this one.
        let mut stream = generated.raw.clone();
        stream.extend_from_slice(&next);
        let parsed = parse_request(&stream, &limits);
        let Ok(Some((request, consumed))) = parsed else {
            return Err(TestCaseError::fail(format!(
                "not framed: {parsed:?}\n{}",
                String::from_utf8_lossy(&generated.raw)
            )));
        };
        prop_assert_eq!(consumed, generated.raw.len());
        assert_matches(&request, &generated)?;
        // Any strict prefix is "need more".
        let prefix = cut.index(generated.raw.len());
        prop_assert_eq!(parse_request(&generated.raw[..prefix], &limits), Ok(None), "prefix of {} bytes", prefix);
    }
}

proptest! {
    // Each case opens a loopback connection.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_socket_path_frames_a_stream_like_parse_request_whatever_the_packet_boundaries(
        requests in prop::collection::vec(generated_request(), 1..4),
        cuts in prop::collection::vec(1usize..400, 1..30),
    ) {
        // All but the last request keep the connection open, so the stream holds all of them.
        let requests: Vec<Generated> = requests.into_iter().filter(|g| g.keep_alive).collect();
        prop_assume!(!requests.is_empty());
        let stream: Vec<u8> = requests.iter().flat_map(|g| g.raw.clone()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nodelay(true).unwrap();
        let writer = std::thread::spawn(move || {
            let mut rest = &stream[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*cut).min(rest.len()));
                client.write_all(piece).unwrap();
                client.flush().unwrap();
                std::thread::sleep(Duration::from_micros(200));
                rest = tail;
            }
            client
        });
        let budget = Arc::new(BodyBudget::unlimited());
        let mut connection = Connection::new(server, Limits::default(), budget);
        for expected in &requests {
            match connection.read_request(&|_| None) {
                Ok(request) => assert_matches(&request, expected)?,
                Err(e) => return Err(TestCaseError::fail(format!("read_request failed: {e}"))),
            }
        }
        drop(writer.join().unwrap());
    }
}
