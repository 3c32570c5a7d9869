//! Events shaped like events.json, numbered so every payload and key differs: the rows that
//! `write_paths` writes straight into PostgreSQL and `batch_load` posts to the consumer are the
//! same, so their figures compare the same work.

/// (event_type, payload template): `{}` is replaced by the event's number.
const SHAPES: [(&str, &str); 10] = [
    (
        "user.login",
        r#"{"user_id": {}, "method": "password", "ip": "10.0.4.17"}"#,
    ),
    ("user.logout", r#"{"user_id": {}, "session_seconds": 1834}"#),
    (
        "order.created",
        r#"{"order_id": "A-{}", "items": 3, "total_eur": 59.90}"#,
    ),
    (
        "order.shipped",
        r#"{"order_id": "A-{}", "carrier": "DHL", "tracking": "JD014600006281"}"#,
    ),
    (
        "payment.failed",
        r#"{"order_id": "A-{}", "reason": "card_declined", "attempt": 2}"#,
    ),
    (
        "sensor.temperature",
        r#"{"sensor": "greenhouse-{}", "celsius": 23.7}"#,
    ),
    ("disk.usage.high", "/var at 91% on edge-node-{}"),
    (
        "service.restarted",
        "nginx restarted by watchdog after {} failed health checks",
    ),
    ("alert.cleared", "Température normale — capteur serre-{} ✓"),
    ("heartbeat", "{}"),
];

/// One row: type, payload and a key unique to (run, connection, number).
#[derive(Debug, Clone)]
pub struct Row {
    pub event_type: &'static str,
    pub event_payload: String,
    pub idempotency_key: String,
}

/// Event number `n` of connection `connection` in run `run`.
pub fn row(run: &str, connection: usize, n: u64) -> Row {
    let (event_type, template) = SHAPES[(n % SHAPES.len() as u64) as usize];
    Row {
        event_type,
        event_payload: template.replacen("{}", &n.to_string(), 1),
        idempotency_key: format!("{run}-{connection}-{n}"),
    }
}

/// `count` rows from number `first` on.
pub fn rows(run: &str, connection: usize, first: u64, count: usize) -> Vec<Row> {
    (first..first + count as u64)
        .map(|n| row(run, connection, n))
        .collect()
}
