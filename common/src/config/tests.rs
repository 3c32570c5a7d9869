//! Tests of the whole chain: the shipped file, unknown and removed keys, defaults, secrets.
//! [`load`] is the chain with a map for the environment, for the sections' tests too.

use super::*;
use std::collections::HashMap;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("config.yaml"), vars(env))
}

/// Loads `text`, which must be refused (`reason` says why) with one line naming `key` and the
/// file; returns the message.
pub(super) fn refused(text: &str, key: &str, reason: &str) -> String {
    let err = load(text, &[]).unwrap_err().to_string();
    assert!(err.contains(key), "{reason}: key not named: {err}");
    assert!(
        err.starts_with("config.yaml:"),
        "{reason}: file not named: {err}"
    );
    assert!(!err.contains('\n'), "{reason}: one line: {err}");
    err
}

#[test]
fn the_shipped_config_loads_with_the_template_variables() {
    let text = include_str!("../../../config.yaml");
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
fn an_unknown_key_is_named() {
    refused("consumer:\n  prot: 8080\n", "prot", "a misspelt key");
    refused("consumr:\n  port: 8080\n", "consumr", "a misspelt section");
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

#[test]
fn each_removed_key_is_refused_naming_its_line_and_saying_it_is_no_longer_a_setting() {
    for (key, now) in REMOVED_KEYS {
        let (section, name) = key.split_once('.').unwrap();
        let text = format!("# a comment\n{section}:\n  {name}: 5\n");
        let err = load(&text, &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::RemovedKey { line: 3, .. }),
            "{key}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "config.yaml:3: {key} is no longer a setting (an internal constant in {now}); \
                 remove it"
            ),
        );
    }
}

#[test]
fn a_removed_key_is_refused_before_its_variable_is_looked_up_and_in_flow_style_too() {
    let text =
        "consumer:\n  port: 8080\n  max_buffered_body_bytes: ${CONSUMER_MAX_BUFFERED_BODY_BYTES}\n";
    let err = load(text, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with("config.yaml:3: consumer.max_buffered_body_bytes is no longer a setting"),
        "the removed key, not the unset variable: {err}"
    );
    // Flow style is not scanned, but the key is unknown to the parser all the same.
    let err = load("consumer: {max_batch: 5}\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_batch"), "{err}");
}

#[test]
fn the_shipped_file_and_the_env_template_set_no_removed_key() {
    let config = include_str!("../../../config.yaml");
    assert_eq!(find_removed_key(config), None);
    let template = include_str!("../../../.env.template");
    for (key, _) in REMOVED_KEYS {
        let variable = key.replace('.', "_").to_uppercase();
        assert!(
            !template.contains(&variable),
            ".env.template names {variable}"
        );
    }
}
