//! Tests of `${VAR}` substitution, through the whole chain as an operator meets it.

use crate::config::tests::load;
use crate::config::ConfigError;

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
