//! `POST /events` (a JSON array or NDJSON, all or nothing, one transaction) and gzip bodies on
//! both event routes, against the real database.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use test_support::TestDb;

use crate::helpers::{
    peak_rss_kib, post_event, send, ConsumerProcess, RawResponse, TestApp, GOOD_EVENT,
};

pub(crate) fn post(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        request.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    send(addr, &request)
}

fn item(i: usize, key: Option<&str>) -> String {
    match key {
        Some(k) => format!(
            r#"{{"event_type":"batch.item","event_payload":"n={i}","idempotency_key":"{k}"}}"#
        ),
        None => format!(r#"{{"event_type":"batch.item","event_payload":"n={i}"}}"#),
    }
}

fn array(items: &[String]) -> Vec<u8> {
    format!("[{}]", items.join(",")).into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn results(response: &RawResponse) -> Vec<Value> {
    response.json()["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results in {}", response.body))
        .clone()
}

#[test]
fn a_batch_is_stored_in_order_with_one_result_per_item() {
    let app = TestApp::spawn();
    let items: Vec<String> = (0..10).map(|i| item(i, None)).collect();
    let response = post(app.addr, "/events", &array(&items), &[]);
    assert_eq!(response.status, 201, "{}", response.body);
    let results = results(&response);
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|r| r["status"] == "created"));
    let mut client = app.db.client();
    for (i, result) in results.iter().enumerate() {
        let row = client
            .query_one(
                "SELECT event_payload FROM events WHERE id = $1",
                &[&result["id"].as_i64().unwrap()],
            )
            .unwrap();
        let payload: String = row.get(0);
        assert_eq!(payload, format!("n={i}"), "result {i} is item {i}'s row");
    }
}

#[test]
fn one_bad_item_stores_nothing_and_names_its_index_and_field() {
    let app = TestApp::spawn();
    let mut items: Vec<String> = (0..10).map(|i| item(i, None)).collect();
    items[7] = r#"{"event_type":"","event_payload":"x"}"#.into();
    let response = post(app.addr, "/events", &array(&items), &[]);
    assert_eq!(response.status, 422, "{}", response.body);
    assert_eq!(response.json()["index"], 7);
    assert_eq!(response.json()["field"], "event_type");
    assert_eq!(app.db.count_events(), 0);

    let mut lines: Vec<String> = (0..5).map(|i| item(i, None)).collect();
    lines[3] = "{not json".into();
    let response = post(
        app.addr,
        "/events",
        lines.join("\n").as_bytes(),
        &[("Content-Type", "application/x-ndjson")],
    );
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.json()["index"], 3);
    assert_eq!(app.db.count_events(), 0);

    assert_eq!(post(app.addr, "/events", b"[]", &[]).status, 422, "empty");
    assert_eq!(
        post(app.addr, "/events", b"{}", &[]).status,
        400,
        "not an array"
    );
}

#[test]
fn ndjson_with_blank_lines_and_no_final_newline_is_a_batch() {
    let app = TestApp::spawn();
    let body = format!(
        "{}\n\n{}\r\n{}",
        item(0, None),
        item(1, None),
        item(2, Some("nd-2"))
    );
    let response = post(
        app.addr,
        "/events",
        body.as_bytes(),
        &[("Content-Type", "application/x-ndjson; charset=utf-8")],
    );
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(results(&response).len(), 3);
    assert_eq!(app.db.count_events(), 3);
}

#[test]
fn a_retried_batch_stores_nothing_twice_and_repeats_its_ids() {
    let app = TestApp::spawn();
    let items: Vec<String> = (0..5)
        .map(|i| item(i, Some(&format!("retry-{i}"))))
        .collect();
    let first = post(app.addr, "/events", &array(&items), &[]);
    let second = post(app.addr, "/events", &array(&items), &[]);
    assert_eq!((first.status, second.status), (201, 200), "{}", second.body);
    let (first, second) = (results(&first), results(&second));
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["received_at"], b["received_at"]);
        assert_eq!(b["status"], "duplicate");
    }
    assert_eq!(app.db.count_events(), 5);
}

#[test]
fn keys_repeated_in_the_batch_or_stored_by_post_event_are_duplicates_of_the_first_row() {
    let app = TestApp::spawn();
    let single = post_event(app.addr, GOOD_EVENT, &[("Idempotency-Key", "from-event")]);
    assert_eq!(single.status, 201);
    let items = vec![
        item(0, Some("in-batch")),
        item(1, Some("in-batch")),
        item(2, Some("from-event")),
        item(3, None),
    ];
    let response = post(app.addr, "/events", &array(&items), &[]);
    assert_eq!(response.status, 201, "{}", response.body);
    let results = results(&response);
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created", "duplicate", "duplicate", "created"]);
    assert_eq!(results[0]["id"], results[1]["id"]);
    assert_eq!(results[2]["id"], single.json()["id"]);
    assert_eq!(app.db.count_events(), 3);
}

#[test]
fn the_batch_limits_are_413() {
    let app = TestApp::spawn_with(|c| {
        c.consumer.max_batch_events = 5;
        c.consumer.max_batch_bytes = 100_000;
    });
    let five: Vec<String> = (0..5).map(|i| item(i, None)).collect();
    assert_eq!(post(app.addr, "/events", &array(&five), &[]).status, 201);
    let six: Vec<String> = (0..6).map(|i| item(i, None)).collect();
    let response = post(app.addr, "/events", &array(&six), &[]);
    assert_eq!(response.status, 413, "{}", response.body);
    // Over max_batch_bytes, declared: refused from the head, before the body is read.
    let head = "POST /events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Content-Length: 100001\r\n\r\n";
    assert_eq!(send(app.addr, head.as_bytes()).status, 413);
    // A batch above max_body_bytes (64 KiB) but within max_batch_bytes is fine.
    let big: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"event_type":"big","event_payload":"{}{i}"}}"#,
                "x".repeat(15_000)
            )
        })
        .collect();
    assert_eq!(post(app.addr, "/events", &array(&big), &[]).status, 201);
    assert_eq!(app.db.count_events(), 10);
}

#[test]
fn gzip_bodies_are_accepted_on_both_routes_and_other_codings_refused() {
    let app = TestApp::spawn();
    let gz = [("Content-Encoding", "gzip")];
    let response = post(app.addr, "/event", &gzip(GOOD_EVENT.as_bytes()), &gz);
    assert_eq!(response.status, 201, "{}", response.body);
    let items: Vec<String> = (0..3).map(|i| item(i, None)).collect();
    let response = post(app.addr, "/events", &gzip(&array(&items)), &gz);
    assert_eq!(response.status, 201, "{}", response.body);
    let response = post(
        app.addr,
        "/event",
        GOOD_EVENT.as_bytes(),
        &[("Content-Encoding", "br")],
    );
    assert_eq!(response.status, 415);
    assert!(
        response.body.contains("br"),
        "names the coding: {}",
        response.body
    );
    let response = post(app.addr, "/events", b"not gzip", &gz);
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(app.db.count_events(), 4);
}

#[test]
fn a_gzip_bomb_gets_413_and_memory_stays_flat() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[]);
    // 1 GiB of zeros in about 1 MB of gzip: one compressed MiB, as 1,024 gzip members.
    let member = gzip(&vec![0u8; 1 << 20]);
    let bomb = member.repeat(1024);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    for path in ["/event", "/events"] {
        let response = post(consumer.addr, path, &bomb, &[("Content-Encoding", "gzip")]);
        assert_eq!(response.status, 413, "{path}: {}", response.body);
    }
    let peak = peak_rss_kib(consumer.pid());
    println!(
        "gzip bomb (1 GiB in {} bytes): peak RSS {peak} KiB",
        bomb.len()
    );
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
    assert_eq!(db.count_events(), 0);
}

#[test]
fn batches_need_the_token_when_one_is_set() {
    let app = TestApp::spawn_with(|c| {
        c.consumer.auth_token = Some(common::config::Secret::new("s3cret".to_owned()));
    });
    let items = array(&[item(0, None)]);
    assert_eq!(post(app.addr, "/events", &items, &[]).status, 401);
    let ok = post(
        app.addr,
        "/events",
        &items,
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(ok.status, 201);
}

#[test]
fn during_a_sigterm_every_201_batch_result_is_in_the_table() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "  shutdown_timeout_seconds: 5\n", &[]);
    let addr = consumer.addr;
    let senders: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for b in 0..200 {
                    let items: Vec<String> = (0..20)
                        .map(|i| item(i, Some(&format!("term-{t}-{b}-{i}"))))
                        .collect();
                    let body = array(&items);
                    let request = format!(
                        "POST /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
                        break;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    if stream.write_all(request.as_bytes()).is_err()
                        || stream.write_all(&body).is_err()
                    {
                        break;
                    }
                    let Some(response) =
                        crate::helpers::read_response(&mut std::io::BufReader::new(stream))
                    else {
                        break;
                    };
                    if response.status == 201 {
                        for r in results(&response) {
                            ids.push(r["id"].as_i64().unwrap());
                        }
                    }
                }
                ids
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let acknowledged: Vec<i64> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert!(
        !acknowledged.is_empty(),
        "some batches were stored before the stop"
    );
    let stored: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM events WHERE id = ANY($1)",
            &[&acknowledged],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize,
        acknowledged.len(),
        "every acknowledged row is there"
    );
    assert_eq!(db.count_events() % 20, 0, "no batch stored in part");
}
