//! `occurred_at`: the time an event happened, as its sender said, stored as the instant it
//! names (NULL when absent) by every write path, and a 422 naming the field when it is no RFC
//! 3339 date-time with an offset.

use std::time::SystemTime;

use common::calendar::parse_rfc3339;
use serde_json::Value;

use crate::batches::post;
use crate::helpers::TestApp;

/// The stored `occurred_at` of row `id`, read back as PostgreSQL has it.
fn stored_time(app: &TestApp, id: &Value) -> Option<SystemTime> {
    let id = id.as_i64().unwrap_or_else(|| panic!("an id, got {id}"));
    app.db
        .client()
        .query_one("SELECT occurred_at FROM events WHERE id = $1", &[&id])
        .unwrap()
        .get(0)
}

fn event(occurred_at: Option<&str>, key: Option<&str>) -> String {
    let mut item = serde_json::json!({"event_type": "door.opened", "event_payload": "north gate"});
    if let Some(time) = occurred_at {
        item["occurred_at"] = time.into();
    }
    if let Some(key) = key {
        item["idempotency_key"] = key.into();
    }
    item.to_string()
}

fn instant(text: &str) -> SystemTime {
    parse_rfc3339(text).unwrap()
}

#[test]
fn a_single_event_stores_the_instant_its_occurred_at_names_and_null_without_one() {
    let app = TestApp::spawn();
    let cases = [
        (
            Some("2026-12-07T04:00:00.123456+01:00"),
            None,
            "an offset east of UTC",
        ),
        (
            Some("2026-12-06T22:00:00-05:00"),
            Some("k-west"),
            "west of UTC, with a key",
        ),
        (Some("1969-07-20T20:17:40Z"), None, "before 1970"),
        (None, None, "no time given"),
    ];
    for (time, key, why) in cases {
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        let response = app.post(&event(time, None), &headers);
        assert_eq!(response.status, 201, "{why}: {}", response.body);
        let stored = stored_time(&app, &response.json()["id"]);
        assert_eq!(stored, time.map(instant), "{why}");
    }
    // PostgreSQL keeps the instant: read in UTC, the first one is 03:00 to the microsecond.
    let utc: String = app
        .db
        .client()
        .query_one(
            "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') \
             FROM events WHERE event_payload = 'north gate' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(utc, "2026-12-07T03:00:00.123456");
}

#[test]
fn each_batch_item_stores_its_own_occurred_at_whichever_statement_writes_it() {
    let app = TestApp::spawn();
    let times = [
        Some("2026-12-07T03:00:00Z"),
        None,
        Some("2026-12-07T04:00:00.5+01:00"),
        None,
    ];
    // Every item keyed: one array statement; several without a key: the numbered statement.
    for keyed in [true, false] {
        let items: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, time)| {
                let key = format!("k-{keyed}-{i}");
                event(*time, keyed.then_some(key.as_str()))
            })
            .collect();
        let body = format!("[{}]", items.join(","));
        let response = post(app.addr, "/events", body.as_bytes(), &[]);
        assert_eq!(response.status, 201, "keyed {keyed}: {}", response.body);
        let results = response.json()["results"].clone();
        for (i, time) in times.iter().enumerate() {
            let stored = stored_time(&app, &results[i]["id"]);
            assert_eq!(stored, time.map(instant), "keyed {keyed}, item {i}");
        }
    }
}

#[test]
fn a_malformed_occurred_at_is_a_422_naming_the_field_and_nothing_is_stored() {
    let app = TestApp::spawn();
    let bad = [
        (r#""2026-12-07T03:00:00""#, "no offset"),
        (r#""2026-02-30T03:00:00Z""#, "a day February does not have"),
        (r#""2026-12-07 03:00:00Z""#, "a space for T"),
        (r#""last tuesday""#, "no date-time at all"),
        ("1796612400", "a number"),
        ("null", "null"),
        (r#"{"at":"2026-12-07T03:00:00Z"}"#, "an object"),
    ];
    for (value, why) in bad {
        let single = format!(r#"{{"event_type":"t","event_payload":"p","occurred_at":{value}}}"#);
        let response = app.post(&single, &[]);
        assert_eq!(response.status, 422, "{why}: {}", response.body);
        assert_eq!(
            response.json()["field"],
            "occurred_at",
            "{why}: {}",
            response.body
        );

        let batch = format!("[{},{}]", event(None, Some("k-ok")), single);
        let response = post(app.addr, "/events", batch.as_bytes(), &[]);
        assert_eq!(response.status, 422, "batch, {why}: {}", response.body);
        let answer = response.json();
        assert_eq!(answer["field"], "occurred_at", "batch, {why}: {answer}");
        assert_eq!(answer["index"], 1, "batch, {why}: {answer}");
    }
    assert_eq!(app.db.count_events(), 0);
}
