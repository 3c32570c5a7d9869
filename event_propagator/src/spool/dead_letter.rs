//! `rejected.ndjson`: the events the consumer refused for good, one JSON object a line, with
//! what it said, so an operator can fix and resend them:
//! `{"idempotency_key", "generated_at", "rejected_at", "status", "error", "event"}`, where
//! `event` is the body that was sent (as JSON) and `error` the consumer's message.

use std::time::SystemTime;

use common::calendar::civil_from_days;

/// The dead-letter file's name in the spool directory.
pub const FILE: &str = "rejected.ndjson";

/// The line (newline included) for an event refused with `status` and `error`.
pub fn line(
    key: &str,
    generated_at_micros: i64,
    body: &[u8],
    status: u16,
    error: &str,
    now: SystemTime,
) -> Vec<u8> {
    // The body was checked before it was spooled, so it is JSON; kept as text if not.
    let event = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into());
    let now_micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let object = serde_json::json!({
        "idempotency_key": key,
        "generated_at": rfc3339(generated_at_micros),
        "rejected_at": rfc3339(now_micros),
        "status": status,
        "error": error,
        "event": event,
    });
    let mut line = serde_json::to_vec(&object).expect("a JSON value always serializes");
    line.push(b'\n');
    line
}

/// `micros` since the epoch as RFC 3339 in UTC, to the microsecond.
pub fn rfc3339(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        micros.rem_euclid(1_000_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_the_key_the_times_the_answer_and_the_event() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        let line = line("k-1", 1_500_000, br#"{"event_type":"t"}"#, 422, "bad", at);
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["idempotency_key"], "k-1");
        assert_eq!(value["generated_at"], "1970-01-01T00:00:01.500000Z");
        assert_eq!(value["rejected_at"], "1970-01-02T00:00:00.000000Z");
        assert_eq!(value["status"], 422);
        assert_eq!(value["error"], "bad");
        assert_eq!(value["event"]["event_type"], "t");
    }
}
