//! Tests of `config.rs`, kept beside it so that file stays one concept.

use super::*;
use std::collections::HashMap;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("config.yaml"), vars(env))
}

#[test]
fn the_shipped_config_loads_with_the_template_variables() {
    let text = include_str!("../../config.yaml");
    let config = load(text, &[("DB_PASSWORD", "s3cret")]).unwrap();
    assert_eq!(config.database.password.expose(), "s3cret");
    assert_eq!(config.consumer.port, 8080);
    assert_eq!(
        config.propagator.endpoint_list(),
        [DEFAULT_ENDPOINT],
        "the shipped file's endpoint default"
    );
}

#[test]
fn substitutes_values_and_defaults() {
    let text = "database:\n  port: ${DB_PORT:-5433}\n  host: ${DB_HOST}\n  user: ${U:-}\n";
    let config = load(text, &[("DB_HOST", "db.local")]).unwrap();
    assert_eq!(config.database.port, 5433);
    assert_eq!(config.database.host, "db.local");
    assert_eq!(config.database.user, "");
    let config = load(text, &[("DB_HOST", "h"), ("DB_PORT", "6000")]).unwrap();
    assert_eq!(config.database.port, 6000);
}

#[test]
fn an_empty_variable_takes_the_default_but_counts_as_a_value_without_one() {
    let text = "database:\n  host: ${H:-fallback}\n  password: \"${P}\"\n";
    let config = load(text, &[("H", ""), ("P", "")]).unwrap();
    assert_eq!(config.database.host, "fallback");
    assert_eq!(config.database.password.expose(), "");
}

#[test]
fn a_missing_variable_names_itself_the_key_and_the_line() {
    let text = "database:\n  host: x\n  password: ${DB_PASSWORD}\n";
    let err = load(text, &[]).unwrap_err().to_string();
    assert!(err.contains("DB_PASSWORD"), "{err}");
    assert!(err.contains("config.yaml:3"), "{err}");
    assert!(err.contains("database.password"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn quoted_secrets_with_special_characters_survive() {
    let text = "database:\n  password: \"${P}\"\nconsumer:\n  auth_token: '${T}'\n";
    let config = load(text, &[("P", r#"a"b\c: #d"#), ("T", "it's")]).unwrap();
    assert_eq!(config.database.password.expose(), r#"a"b\c: #d"#);
    assert_eq!(config.consumer.auth_token.unwrap().expose(), "it's");
}

#[test]
fn comments_and_escaped_dollars_are_left_alone() {
    let text = "# uses ${NOT_SET}\ndatabase:\n  dbname: \"$${literal}\"\n  user: a$b\n";
    let config = load(text, &[]).unwrap();
    assert_eq!(config.database.dbname, "${literal}");
    assert_eq!(config.database.user, "a$b");
}

#[test]
fn malformed_references_are_refused() {
    for text in ["a: ${UNCLOSED", "a: ${}", "a: ${1X}", "a: ${A B}"] {
        let err = load(text, &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::BadSubstitution { .. }),
            "{text}: {err}"
        );
    }
}

#[test]
fn an_unknown_key_is_named() {
    let err = load("consumer:\n  prot: 8080\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("prot"), "{err}");
    assert!(err.starts_with("config.yaml:"), "{err}");
    let err = load("consumr:\n  port: 8080\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("consumr"), "{err}");
}

#[test]
fn a_non_number_port_is_refused_naming_the_key() {
    let err = load("consumer:\n  port: eighty\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("consumer.port"), "{err}");
    let err = load("consumer:\n  port: 70000\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("consumer.port"), "{err}");
}

#[test]
fn values_that_cannot_work_are_refused_naming_the_key() {
    let cases = [
        ("consumer:\n  workers: 0\n", "consumer.workers"),
        (
            "propagator:\n  period_seconds: -1\n",
            "propagator.period_seconds",
        ),
        (
            "propagator:\n  endpoint: localhost:8080\n",
            "propagator.endpoint",
        ),
        (
            "database:\n  connect_timeout_seconds: 0\n",
            "database.connect_timeout_seconds",
        ),
    ];
    for (text, key) in cases {
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
}

#[test]
fn a_body_budget_below_the_body_limit_is_refused_naming_the_key_and_the_file() {
    let text = "consumer:\n  max_body_bytes: 65536\n  max_buffered_body_bytes: 65535\n";
    let err = load(text, &[]).unwrap_err().to_string();
    assert!(err.contains("consumer.max_buffered_body_bytes"), "{err}");
    assert!(err.starts_with("config.yaml:"), "{err}");
    let text = "consumer:\n  max_body_bytes: 65536\n  max_batch_bytes: 65536\n  max_buffered_body_bytes: 65536\n";
    assert_eq!(
        load(text, &[]).unwrap().consumer.max_buffered_body_bytes,
        65536
    );
    // The shipped file's default, and its variable as an operator would set it.
    let shipped = include_str!("../../config.yaml");
    let env = [("DB_PASSWORD", "x")];
    assert_eq!(
        load(shipped, &env)
            .unwrap()
            .consumer
            .max_buffered_body_bytes,
        ConsumerConfig::default().max_buffered_body_bytes
    );
    let env = [
        ("DB_PASSWORD", "x"),
        ("CONSUMER_MAX_BUFFERED_BODY_BYTES", "5242880"),
    ];
    assert_eq!(
        load(shipped, &env)
            .unwrap()
            .consumer
            .max_buffered_body_bytes,
        5_242_880
    );
}

#[test]
fn max_in_flight_outside_1_to_1024_is_refused_naming_the_key_and_the_file() {
    let cases = [
        ("0", "zero sends in flight could never send"),
        ("2000", "above the 1024 limit"),
        ("abc", "not a number"),
        ("-1", "negative"),
        ("2.5", "not a whole number"),
    ];
    for (value, reason) in cases {
        let text = format!("propagator:\n  max_in_flight: {value}\n");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("propagator.max_in_flight"),
            "{reason}: key not named: {err}"
        );
        assert!(
            err.starts_with("config.yaml:"),
            "{reason}: file not named: {err}"
        );
        assert!(!err.contains('\n'), "{reason}: one line: {err}");
    }
    for value in [1, 32, 1024] {
        let text = format!("propagator:\n  max_in_flight: {value}\n");
        let config = load(&text, &[]).unwrap();
        assert_eq!(config.propagator.max_in_flight, value);
    }
    // Through the shipped file's variable, as an operator would set it.
    let text = include_str!("../../config.yaml");
    let env = [("DB_PASSWORD", "x"), ("PROPAGATOR_MAX_IN_FLIGHT", "8")];
    assert_eq!(load(text, &env).unwrap().propagator.max_in_flight, 8);
    let env = [("DB_PASSWORD", "x"), ("PROPAGATOR_MAX_IN_FLIGHT", "0")];
    let err = load(text, &env).unwrap_err().to_string();
    assert!(err.contains("propagator.max_in_flight"), "{err}");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.propagator.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
}

#[test]
fn endpoints_is_a_list_of_urls_instead_of_endpoint() {
    let text = "propagator:\n  endpoints:\n    - http://a:8080/event\n    - https://b/event\n";
    let config = load(text, &[]).unwrap();
    assert_eq!(
        config.propagator.endpoint_list(),
        ["http://a:8080/event", "https://b/event"]
    );
    let config = load("propagator:\n  endpoint: http://one/event\n", &[]).unwrap();
    assert_eq!(config.propagator.endpoint_list(), ["http://one/event"]);
    assert_eq!(
        load("", &[]).unwrap().propagator.endpoint_list(),
        [DEFAULT_ENDPOINT]
    );
    let cases = [
        (
            "propagator:\n  endpoint: http://a/event\n  endpoints: [http://b/event]\n",
            "propagator.endpoint",
            "both keys set",
        ),
        (
            "propagator:\n  endpoints: []\n",
            "at least one",
            "an empty list",
        ),
        (
            "propagator:\n  endpoints: [http://a/event, b:1/event]\n",
            "item 1",
            "a URL without scheme",
        ),
        (
            "propagator:\n  endpoints: [http://a/event, http://a/event]\n",
            "listed twice",
            "the same URL twice",
        ),
        (
            "propagator:\n  endpoints: http://a/event\n",
            "propagator.endpoints",
            "a string, not a list",
        ),
        (
            "propagator:\n  endpoints: [http://a/event, http://b/event]\n  \
             batch_endpoint: http://a/events\n",
            "propagator.batch_endpoint",
            "one batch URL for several endpoints",
        ),
    ];
    for (text, needle, reason) in cases {
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains(needle), "{reason}: {err}");
        assert!(
            err.starts_with("config.yaml:"),
            "{reason}: file not named: {err}"
        );
        assert!(
            err.contains("propagator.endpoint") || err.contains("propagator.batch_endpoint"),
            "{reason}: key not named: {err}"
        );
    }
    let both = "propagator:\n  endpoint: http://a/event\n  endpoints: [http://b/event]\n";
    let err = load(both, &[]).unwrap_err().to_string();
    assert!(
        err.contains("propagator.endpoints") && err.contains("remove propagator.endpoint"),
        "names both keys and what to do: {err}"
    );
    // One endpoint in the list may still name its batch URL.
    let text = "propagator:\n  endpoints: [http://a/event]\n  batch_endpoint: http://a/bulk\n";
    assert!(load(text, &[]).is_ok());
}

#[test]
fn drain_seconds_outside_0_to_3600_is_refused_naming_the_key_and_the_file() {
    let cases = [
        ("-1", "a negative drain"),
        ("3600.5", "above the hour's bound"),
        (".nan", "NaN"),
        (".inf", "infinite"),
        ("five", "not a number"),
    ];
    for (value, reason) in cases {
        let text = format!("consumer:\n  drain_seconds: {value}\n");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("consumer.drain_seconds"),
            "{reason}: key not named: {err}"
        );
        assert!(
            err.starts_with("config.yaml:"),
            "{reason}: file not named: {err}"
        );
        assert!(!err.contains('\n'), "{reason}: one line: {err}");
    }
    for (value, seconds) in [("0", 0.0), ("2.5", 2.5), ("3600", 3600.0)] {
        let text = format!("consumer:\n  drain_seconds: {value}\n");
        let config = load(&text, &[]).unwrap();
        assert_eq!(config.consumer.drain_seconds, seconds, "{value}");
    }
    assert_eq!(
        load("", &[]).unwrap().consumer.drain_seconds,
        0.0,
        "no drain unless asked for: a stop behaves as before"
    );
}

#[test]
fn batch_size_outside_1_to_1000_is_refused_naming_the_key_and_the_file() {
    let cases = [
        ("0", "an empty batch"),
        ("1001", "above the consumer's default max_batch_events"),
        ("ten", "not a number"),
        ("-1", "negative"),
        ("2.5", "not a whole number"),
    ];
    for (value, reason) in cases {
        let text = format!("propagator:\n  batch_size: {value}\n");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("propagator.batch_size"),
            "{reason}: key not named: {err}"
        );
        assert!(
            err.starts_with("config.yaml:"),
            "{reason}: file not named: {err}"
        );
        assert!(!err.contains('\n'), "{reason}: one line: {err}");
    }
    for value in [1, 100, 1000] {
        let text = format!("propagator:\n  batch_size: {value}\n");
        assert_eq!(load(&text, &[]).unwrap().propagator.batch_size, value);
    }
}

#[test]
fn the_shipped_file_takes_batch_size_batch_endpoint_and_gzip_from_the_environment() {
    let text = include_str!("../../config.yaml");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.propagator.batch_size, 1);
    assert_eq!(config.propagator.batch_endpoint(), None);
    assert!(!config.propagator.gzip);
    let env = [
        ("DB_PASSWORD", "x"),
        ("PROPAGATOR_BATCH_SIZE", "100"),
        ("PROPAGATOR_BATCH_ENDPOINT", "http://h:1/bulk"),
        ("PROPAGATOR_GZIP", "true"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(config.propagator.batch_size, 100);
    assert_eq!(config.propagator.batch_endpoint(), Some("http://h:1/bulk"));
    assert!(config.propagator.gzip);
    let env = [("DB_PASSWORD", "x"), ("PROPAGATOR_GZIP", "yes please")];
    let err = load(text, &env).unwrap_err().to_string();
    assert!(err.contains("propagator.gzip"), "{err}");
    let env = [
        ("DB_PASSWORD", "x"),
        ("PROPAGATOR_BATCH_ENDPOINT", "h:1/bulk"),
    ];
    let err = load(text, &env).unwrap_err().to_string();
    assert!(err.contains("propagator.batch_endpoint"), "{err}");
}

#[test]
fn the_batch_endpoint_is_the_sibling_events_of_the_event_endpoint() {
    let cases = [
        ("http://h:8080/event", "http://h:8080/events"),
        ("https://h/api/v1/event", "https://h/api/v1/events"),
        ("http://h/event?tenant=a", "http://h/events?tenant=a"),
        ("http://h/event#frag", "http://h/events"),
        ("http://u:p@h/event", "http://u:p@h/events"),
    ];
    for (endpoint, expected) in cases {
        assert_eq!(
            sibling_batch_endpoint(endpoint).as_deref(),
            Ok(expected),
            "{endpoint}"
        );
    }
    let refused = [
        ("http://h:8080/ingest", "another last segment"),
        (
            "http://h:8080/event/",
            "a trailing slash: the last segment is empty",
        ),
        ("http://h:8080/events", "already the batch path"),
        ("http://h:8080/myevent", "a segment that only ends in event"),
        ("http://h:8080", "no path"),
        ("http://event", "a host named event is not a path"),
        ("http://h?x=/event", "a query that looks like the path"),
    ];
    for (endpoint, reason) in refused {
        let err = sibling_batch_endpoint(endpoint).unwrap_err();
        assert!(err.contains("propagator.batch_endpoint"), "{reason}: {err}");
    }
}

#[test]
fn sslmode_takes_libpq_values_and_a_bad_one_names_the_key_and_the_choices() {
    for (value, mode) in [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        let config = load(&format!("database:\n  sslmode: {value}\n"), &[]).unwrap();
        assert_eq!(config.database.sslmode, mode);
        assert_eq!(mode.as_str(), value);
    }
    let err = load("database:\n  sslmode: verify\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("database.sslmode"), "{err}");
    for allowed in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        assert!(err.contains(allowed), "{allowed} not listed: {err}");
    }
}

#[test]
fn the_shipped_config_defaults_to_prefer_and_no_tls_files() {
    let text = include_str!("../../config.yaml");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.database.sslmode, SslMode::Prefer);
    assert_eq!(config.database.sslrootcert(), None);
    assert_eq!(config.propagator.tls_ca_file(), None);
    assert_eq!(config.propagator.tls_client_identity_files(), None);
    let env = [
        ("DB_PASSWORD", "x"),
        ("DB_SSLMODE", "verify-full"),
        ("DB_SSLROOTCERT", "/etc/pki/db-ca.pem"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(config.database.sslmode, SslMode::VerifyFull);
    assert_eq!(
        config.database.sslrootcert(),
        Some(Path::new("/etc/pki/db-ca.pem"))
    );
}

#[test]
fn a_client_certificate_without_its_key_or_the_reverse_is_refused_naming_both_keys() {
    let cases = [
        (
            "propagator:\n  tls_client_cert_file: c.pem\n",
            "propagator.tls_client_cert_file: is set but propagator.tls_client_key_file",
        ),
        (
            "propagator:\n  tls_client_key_file: k.pem\n  tls_client_cert_file: ''\n",
            "propagator.tls_client_key_file: is set but propagator.tls_client_cert_file",
        ),
    ];
    for (text, expected) in cases {
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    let both = "propagator:\n  tls_client_cert_file: c.pem\n  tls_client_key_file: k.pem\n";
    let config = load(both, &[]).unwrap();
    assert_eq!(
        config.propagator.tls_client_identity_files(),
        Some((Path::new("c.pem"), Path::new("k.pem")))
    );
}

#[test]
fn a_missing_tls_file_is_named_with_its_key_and_the_config_file() {
    let config = load("database:\n  sslrootcert: /nonexistent/root.crt\n", &[]).unwrap();
    let err = config
        .check_tls_files(Path::new("config.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("config.yaml: database.sslrootcert: cannot read /nonexistent/root.crt"),
        "{err}"
    );
}

#[test]
fn missing_sections_take_their_defaults() {
    let config = load("", &[]).unwrap();
    assert_eq!(config, Config::default());
    let config = load("propagator:\n  period_seconds: 0.05\n", &[]).unwrap();
    assert_eq!(config.propagator.period_seconds, 0.05);
    assert_eq!(config.consumer, ConsumerConfig::default());
}

#[test]
fn secrets_never_show_in_debug_output() {
    let text = "database:\n  password: hunter2\nconsumer:\n  auth_token: tok123\npropagator:\n  auth_token: tok456\n";
    let config = load(text, &[]).unwrap();
    let debug = format!("{config:?}");
    for secret in ["hunter2", "tok123", "tok456"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
}

fn endpoints(config: &Config) -> Vec<String> {
    let endpoints = config.database.endpoints().unwrap();
    endpoints.iter().map(DbEndpoint::to_string).collect()
}

#[test]
fn several_hosts_take_one_port_for_all_or_one_each_as_a_number_a_list_or_a_string() {
    let cases: [(&str, &[&str], &str); 6] = [
        (
            "host: db1\n  port: 5432",
            &["db1:5432"],
            "one host, one port",
        ),
        (
            "host: db1,db2\n  port: 6000",
            &["db1:6000", "db2:6000"],
            "one port applies to every host, as libpq's",
        ),
        (
            "host: db1, db2\n  port: 5432,5433",
            &["db1:5432", "db2:5433"],
            "a comma-separated string, spaces around items ignored",
        ),
        (
            "host: db1,db2\n  port: [5432, 5433]",
            &["db1:5432", "db2:5433"],
            "a YAML list of numbers",
        ),
        (
            "host: db1,db2\n  port: [\"5432\", 5433]",
            &["db1:5432", "db2:5433"],
            "a YAML list of strings and numbers",
        ),
        (
            "host: /run/postgresql,db2\n  port: \"5432\"",
            &["/run/postgresql:5432", "db2:5432"],
            "a quoted port and a Unix socket directory",
        ),
    ];
    for (yaml, expected, why) in cases {
        let config = load(&format!("database:\n  {yaml}\n"), &[]).unwrap();
        assert_eq!(endpoints(&config), expected, "{why}");
    }
}

#[test]
fn db_host_and_db_port_take_lists_through_the_shipped_config() {
    let text = include_str!("../../config.yaml");
    let env = [
        ("DB_PASSWORD", "s3cret"),
        ("DB_HOST", "db1.internal,db2.internal"),
        ("DB_PORT", "5432,5433"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(
        endpoints(&config),
        ["db1.internal:5432", "db2.internal:5433"]
    );
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::ReadWrite,
        "read-write by default"
    );
    assert_eq!(config.database.port.to_string(), "5432,5433");
    let config = load(
        text,
        &[("DB_PASSWORD", "s"), ("DB_TARGET_SESSION_ATTRS", "any")],
    )
    .unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::Any
    );
}

#[test]
fn target_session_attrs_takes_any_or_read_write_and_defaults_to_read_write() {
    let config = load("database:\n  target_session_attrs: any\n", &[]).unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::Any
    );
    let config = load("database:\n  target_session_attrs: read-write\n", &[]).unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
    let config = load("database:\n  host: db\n", &[]).unwrap();
    assert_eq!(
        config.database.target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
}

#[test]
fn bad_host_and_port_lists_are_refused_naming_the_key_and_the_file() {
    let cases = [
        (
            "host: db1,db2,db3\n  port: 5432,5433",
            "database.port",
            "has 2 ports",
            "two ports for three hosts",
        ),
        (
            "host: db1\n  port: [5432, 5433]",
            "database.port",
            "for 1 hosts",
            "two ports for one host",
        ),
        (
            "host: db1,,db2",
            "database.host",
            "item 2 of 3",
            "an empty item between two commas",
        ),
        (
            "host: db1,",
            "database.host",
            "item 2 of 2",
            "a trailing comma",
        ),
        ("host: \"\"", "database.host", "is empty", "no host at all"),
        (
            "host: db1,db2\n  port: 5432,70000",
            "database.port",
            "out of range",
            "a port above 65535 in a string",
        ),
        (
            "port: 70000",
            "database.port",
            "out of range",
            "a port above 65535",
        ),
        ("port: 0", "database.port", "out of range", "port 0"),
        (
            "port: [5432, -1]",
            "database.port",
            "out of range",
            "a negative port in a list",
        ),
        (
            "host: a,b\n  port: 5432,,5433",
            "database.port",
            "empty port",
            "an empty port between two commas",
        ),
        (
            "port: 54x2",
            "database.port",
            "not a port number",
            "a port that is no number",
        ),
        ("port: []", "database.port", "empty list", "an empty list"),
        (
            "target_session_attrs: read-only",
            "database.target_session_attrs",
            "any",
            "a libpq value the consumer has no use for",
        ),
        (
            "target_session_attrs: primary",
            "database.target_session_attrs",
            "read-write",
            "an unknown value",
        ),
    ];
    for (yaml, key, problem, why) in cases {
        let err = load(&format!("database:\n  {yaml}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.yaml:"), "{why}: {err}");
        assert!(err.contains(key), "{why}: names {key}: {err}");
        assert!(err.contains(problem), "{why}: says `{problem}`: {err}");
        assert!(!err.contains('\n'), "{why}: one line: {err}");
    }
}
