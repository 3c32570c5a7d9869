//! Keys that were settings once and are internal constants now. A file that still sets one is
//! refused, as any unknown key is, but with a message that says what happened and what to do,
//! and on which line.

use super::substitute::key_path;

/// Every removed key, with where its value lives now: a constant holding the key's old
/// default. Each was internal tuning that no operator had a reason to change.
pub const REMOVED_KEYS: [(&str, &str); 7] = [
    ("consumer.queue_capacity", "event_consumer's pipeline"),
    ("consumer.max_batch", "event_consumer's pipeline"),
    ("consumer.max_headers", "event_consumer's HTTP limits"),
    (
        "consumer.write_timeout_seconds",
        "event_consumer's HTTP limits",
    ),
    (
        "consumer.max_buffered_body_bytes",
        "event_consumer's body budget",
    ),
    (
        "propagator.connect_timeout_seconds",
        "event_propagator's sender",
    ),
    (
        "propagator.backoff_initial_seconds",
        "event_propagator's sender",
    ),
];

/// The first line of `text` that sets a removed key: its number (from 1) and the key.
///
/// Looks at block mappings, the shape the shipped file and every example use; a removed key in
/// a flow mapping (`consumer: {max_batch: 1}`) is still refused, as an unknown field.
pub fn find_removed_key(text: &str) -> Option<(usize, &'static str, &'static str)> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines.iter().enumerate().find_map(|(index, line)| {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            return None;
        }
        let (name, _) = trimmed.split_once(':')?;
        let name = name.trim().trim_matches(|c| c == '"' || c == '\'');
        let (key, now) = REMOVED_KEYS
            .iter()
            .find(|(key, _)| key.rsplit('.').next() == Some(name))?;
        (key_path(&lines, index) == *key).then_some((index + 1, *key, *now))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_removed_key_by_its_section_and_line() {
        let text = "database:\n  host: db\nconsumer:\n  port: 1\n  max_batch: 5\n";
        assert_eq!(
            find_removed_key(text),
            Some((5, "consumer.max_batch", "event_consumer's pipeline"))
        );
    }

    #[test]
    fn ignores_comments_other_sections_and_keys_that_only_share_the_name() {
        let cases = [
            ("consumer:\n  # max_batch: 5\n", "a comment"),
            ("propagator:\n  max_batch: 5\n", "another section"),
            ("consumer:\n  max_batch_events: 5\n", "a longer key"),
            ("max_batch: 5\n", "the top level"),
        ];
        for (text, why) in cases {
            assert_eq!(find_removed_key(text), None, "{why}");
        }
    }
}
