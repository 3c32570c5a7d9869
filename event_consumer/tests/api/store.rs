//! The storage layer on its own.

use std::time::Duration;

use common::Event;
use event_consumer::db::{NewEvent, Saved, Store, StoreError};
use test_support::{Cluster, TestDb};

fn event(t: &str, p: &str) -> Event {
    Event::new(t, p).unwrap()
}

#[test]
fn an_inserted_event_reads_back_with_its_id_and_time() {
    let db = TestDb::new();
    let mut store = Store::connect(&db.database_config()).unwrap();
    let saved = store
        .save(&event("door.opened", "north gate"), None)
        .unwrap();
    let Saved::Created(row) = saved else {
        panic!("expected Created, got {saved:?}")
    };
    let back = db
        .client()
        .query_one(
            "SELECT event_type, event_payload, idempotency_key, \
                    to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM events WHERE id = $1",
            &[&row.id],
        )
        .unwrap();
    assert_eq!(back.get::<_, String>(0), "door.opened");
    assert_eq!(back.get::<_, String>(1), "north gate");
    assert_eq!(back.get::<_, Option<String>>(2), None);
    // The service formats the time itself; it must say what PostgreSQL says, to the microsecond.
    assert_eq!(row.received_at, back.get::<_, String>(3));
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_row_and_writes_nothing() {
    let db = TestDb::new();
    let mut store = Store::connect(&db.database_config()).unwrap();
    let first = store.save(&event("a", "1"), Some("key-1")).unwrap();
    let again = store
        .save(&event("a", "different payload"), Some("key-1"))
        .unwrap();
    assert!(matches!(first, Saved::Created(_)));
    assert_eq!(again, Saved::Existing(first.stored().clone()));
    assert_eq!(db.count_events(), 1);
}

#[test]
fn a_batch_keeps_input_order_and_handles_repeated_keys_inside_it() {
    let db = TestDb::new();
    let mut store = Store::connect(&db.database_config()).unwrap();
    store.save(&event("old", "x"), Some("seen-before")).unwrap();
    let events: Vec<Event> = (0..6).map(|i| event("t", &format!("p{i}"))).collect();
    let keys = [
        None,
        Some("k1"),
        Some("seen-before"),
        None,
        Some("k1"),
        Some("k2"),
    ];
    let batch: Vec<NewEvent<'_>> = events
        .iter()
        .zip(keys)
        .map(|(event, idempotency_key)| NewEvent {
            event,
            idempotency_key,
        })
        .collect();
    let saved = store.save_batch(&batch).unwrap();
    let kinds: Vec<&str> = saved
        .iter()
        .map(|s| {
            if matches!(s, Saved::Created(_)) {
                "created"
            } else {
                "existing"
            }
        })
        .collect();
    assert_eq!(
        kinds,
        ["created", "created", "existing", "created", "existing", "created"]
    );
    assert_eq!(
        saved[1].stored(),
        saved[4].stored(),
        "same key in one batch, same row"
    );
    // Each created row holds its own payload: the outcomes are matched to the right inputs.
    let mut client = db.client();
    for (i, s) in saved.iter().enumerate() {
        if let Saved::Created(row) = s {
            let payload: String = client
                .query_one("SELECT event_payload FROM events WHERE id = $1", &[&row.id])
                .unwrap()
                .get(0);
            assert_eq!(payload, format!("p{i}"));
        }
    }
    assert_eq!(db.count_events(), 1 + 4);
}

#[test]
fn a_lost_connection_is_reported_as_unavailable() {
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    let mut store = Store::connect(&db.database_config()).unwrap();
    store.save(&event("a", "b"), None).unwrap();
    cluster.stop("fast");
    let err = store.save(&event("a", "b"), None).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = Store::connect(&db.database_config()).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!store.is_valid(Duration::from_millis(500)));
    cluster.pg_ctl_start();
}

#[test]
fn a_missing_table_is_a_failure_not_an_outage() {
    let db = TestDb::new();
    db.client().batch_execute("DROP TABLE events").unwrap();
    let err = Store::connect(&db.database_config()).unwrap_err();
    assert!(matches!(err, StoreError::Failed(_)), "{err:?}");
    assert!(err.to_string().contains("events"), "{err}");
}

#[test]
fn every_row_of_a_batch_with_several_keyless_events_is_matched_to_its_own_event() {
    let db = TestDb::new();
    let mut store = Store::connect(&db.database_config()).unwrap();
    store
        .save(&event("old", "x"), Some("stored-before"))
        .unwrap();
    let events: Vec<Event> = (0..40).map(|i| event("t", &format!("p{i}"))).collect();
    // Keyless events among keyed ones, a repeat of a stored key, and a key repeated inside.
    let keys: Vec<Option<String>> = (0..40)
        .map(|i| match i % 5 {
            1 => Some(format!("k{i}")),
            3 if i == 3 => Some("stored-before".to_owned()),
            4 => Some("inside".to_owned()),
            _ => None,
        })
        .collect();
    let batch: Vec<NewEvent<'_>> = events
        .iter()
        .zip(&keys)
        .map(|(event, key)| NewEvent {
            event,
            idempotency_key: key.as_deref(),
        })
        .collect();
    let saved = store.save_batch(&batch).unwrap();
    assert_eq!(saved.len(), batch.len());
    for (i, (saved, key)) in saved.iter().zip(&keys).enumerate() {
        let row = db
            .client()
            .query_one(
                "SELECT event_payload, idempotency_key FROM events WHERE id = $1",
                &[&saved.stored().id],
            )
            .unwrap();
        let payload: String = row.get(0);
        let stored_key: Option<String> = row.get(1);
        match key.as_deref() {
            None => {
                assert!(matches!(saved, Saved::Created(_)), "event {i}: {saved:?}");
                assert_eq!(
                    payload,
                    format!("p{i}"),
                    "event {i} got another event's row"
                );
                assert_eq!(stored_key, None, "event {i} sent no key");
            }
            Some("stored-before") => {
                assert!(matches!(saved, Saved::Existing(_)), "event {i}: {saved:?}");
                assert_eq!(payload, "x", "event {i} must get the row stored before");
            }
            Some("inside") if i == 4 => {
                assert!(matches!(saved, Saved::Created(_)), "event {i}: {saved:?}");
                assert_eq!(payload, "p4", "the first occurrence of a key is written");
            }
            Some("inside") => {
                assert_eq!(saved, &Saved::Existing(saved.stored().clone()));
                assert_eq!(payload, "p4", "event {i} repeats the key of event 4");
            }
            Some(other) => {
                assert!(matches!(saved, Saved::Created(_)), "event {i}: {saved:?}");
                assert_eq!(payload, format!("p{i}"), "event {i}");
                assert_eq!(stored_key.as_deref(), Some(other));
            }
        }
    }
    // 23 keyless + 8 keyed + 1 of the repeated key inside, + the row stored before.
    assert_eq!(db.count_events(), 1 + 23 + 8 + 1);
}
