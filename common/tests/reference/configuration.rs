//! `docs/configuration.md` against the code. The keys come from the deserializer itself: the
//! derived `Deserialize` of each section hands serde the list of field names it accepts (the
//! same list that makes an unknown key an error), and [`FieldNames`] catches that list. So
//! the keys are not a second hand-written list, and the config structs need no `Serialize`
//! (which would be one more way for a `Secret` to get out). A default shown in the reference
//! is checked by writing it into a config file and parsing that: it must give
//! `Config::default()`. The environment variable shown must be the one the shipped
//! `config.yaml` substitutes for that key, and `.env.template` must list it with the same
//! default. `db_init_script.sh`'s variables are read from its `${NAME:-default}` expansions.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use common::config::{ConsumerConfig, DatabaseConfig, PropagatorConfig};
use common::Config;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::markdown::{code, tables, Table};
use crate::repository_file;

const REFERENCE: &str = "docs/configuration.md";

/// A deserializer that holds no data: asked for a struct, it fails with the struct's field names.
struct FieldNames;

#[derive(Debug)]
enum Caught {
    Fields(&'static [&'static str]),
    Other(String),
}

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Caught {}

impl de::Error for Caught {
    fn custom<T: fmt::Display>(msg: T) -> Caught {
        Caught::Other(msg.to_string())
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Caught;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Caught> {
        Err(Caught::Other("not a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Caught> {
        Err(Caught::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys `T` accepts, as its deserializer knows them.
fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Caught::Fields(fields)) => fields,
        Err(Caught::Other(e)) => panic!(
            "{} is not read as a struct: {e}",
            std::any::type_name::<T>()
        ),
        Ok(_) => panic!("{} deserialized from nothing", std::any::type_name::<T>()),
    }
}

/// Every section of the file with its keys.
fn sections() -> Vec<(&'static str, &'static [&'static str])> {
    keys_of::<Config>()
        .iter()
        .map(|&section| {
            let keys = match section {
                "database" => keys_of::<DatabaseConfig>(),
                "consumer" => keys_of::<ConsumerConfig>(),
                "propagator" => keys_of::<PropagatorConfig>(),
                other => panic!(
                    "config.yaml has a new section `{other}`: add its arm here and its table \
                     to {REFERENCE}"
                ),
            };
            (section, keys)
        })
        .collect()
}

/// One row of a section's table.
#[derive(Debug, Clone)]
struct Documented {
    line: usize,
    default: String,
    variable: String,
}

/// The reference's key tables (header `key | default | environment variable | meaning`) by
/// section, named by the table's heading (`` `database` ``).
fn documented_keys(
    reference: &str,
) -> Result<BTreeMap<String, BTreeMap<String, Documented>>, String> {
    let mut found: BTreeMap<String, BTreeMap<String, Documented>> = BTreeMap::new();
    for Table {
        heading,
        header,
        rows,
    } in tables(reference)
    {
        if header.first().map(String::as_str) != Some("key") {
            continue;
        }
        if header != ["key", "default", "environment variable", "meaning"] {
            return Err(format!(
                "the table under `{heading}` has the header {header:?}"
            ));
        }
        let section = code(&heading)
            .ok_or_else(|| {
                format!(
                    "a key table stands under `{heading}`, not under a section name in backticks"
                )
            })?
            .to_owned();
        for row in rows {
            let [key, default, variable, _meaning] = &row.cells[..] else {
                return Err(format!("{REFERENCE}:{}: not 4 cells", row.line));
            };
            let key = code(key).ok_or_else(|| {
                format!(
                    "{REFERENCE}:{}: the key `{key}` is not one code span",
                    row.line
                )
            })?;
            let previous = found.entry(section.clone()).or_default().insert(
                key.to_owned(),
                Documented {
                    line: row.line,
                    default: default.clone(),
                    variable: variable.clone(),
                },
            );
            if previous.is_some() {
                return Err(format!(
                    "{REFERENCE}:{}: {section}.{key} is listed twice",
                    row.line
                ));
            }
        }
    }
    Ok(found)
}

/// The config file a default cell stands for: `none` is an unset optional key (`~`), any other
/// default is one code span holding the YAML value.
fn default_as_yaml(default: &str) -> Option<String> {
    if default == "none" {
        return Some("~".to_owned());
    }
    code(default).map(str::to_owned)
}

/// Whether the default shown gives the code's default; Err says what it gives instead.
fn check_default(section: &str, key: &str, default: &str) -> Result<(), String> {
    let value = default_as_yaml(default)
        .ok_or_else(|| format!("the default `{default}` is neither `none` nor one code span"))?;
    let text = format!("{section}:\n  {key}: {value}\n");
    let parsed = Config::from_yaml(&text, Path::new(REFERENCE), |_| None)
        .map_err(|e| format!("the default {default} does not parse: {e}"))?;
    if parsed == Config::default() {
        Ok(())
    } else {
        Err(format!(
            "the default shown is {default}, but the code's default differs ({section}: {})",
            section_of(&Config::default(), section)
        ))
    }
}

fn section_of(config: &Config, section: &str) -> String {
    match section {
        "database" => format!("{:?}", config.database),
        "consumer" => format!("{:?}", config.consumer),
        _ => format!("{:?}", config.propagator),
    }
}

/// The shipped config's keys by section, each with the variable its value substitutes (if any)
/// and that variable's default (`${VAR:-default}`; None for `${VAR}`).
type Shipped = BTreeMap<(String, String), Option<(String, Option<String>)>>;

fn shipped_config(text: &str) -> Shipped {
    let mut keys = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let content = line.split(" #").next().unwrap_or_default().trim_end();
        if content.trim_start().starts_with('#') || content.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once(':') else {
            continue;
        };
        if !line.starts_with(' ') {
            section = key.trim().to_owned();
            continue;
        }
        keys.insert((section.clone(), key.trim().to_owned()), variable_in(value));
    }
    keys
}

/// `${NAME}` or `${NAME:-default}` in `value`: the name and the default.
fn variable_in(value: &str) -> Option<(String, Option<String>)> {
    let start = value.find("${")? + 2;
    let inner = &value[start..start + value[start..].find('}')?];
    Some(match inner.split_once(":-") {
        Some((name, default)) => (name.to_owned(), Some(default.to_owned())),
        None => (inner.to_owned(), None),
    })
}

/// The variables `.env.template` lists (set or commented out) with their values.
fn template_variables(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim();
            let (name, value) = l.split_once('=')?;
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            valid.then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Everything wrong between the reference, the code, the shipped config and `.env.template`.
fn problems(reference: &str, shipped: &str, template: &str) -> Vec<String> {
    let documented = match documented_keys(reference) {
        Ok(documented) => documented,
        Err(e) => return vec![e],
    };
    let shipped = shipped_config(shipped);
    let template = template_variables(template);
    let mut problems = Vec::new();
    let sections = sections();
    for (section, keys) in &sections {
        let rows = documented.get(*section);
        for key in *keys {
            let Some(row) = rows.and_then(|r| r.get(*key)) else {
                problems.push(format!("{section}.{key} is missing from {REFERENCE}"));
                continue;
            };
            if let Err(e) = check_default(section, key, &row.default) {
                problems.push(format!("{REFERENCE}:{}: {section}.{key}: {e}", row.line));
            }
            let variable = shipped
                .get(&(section.to_string(), key.to_string()))
                .cloned()
                .flatten();
            let want = match &variable {
                Some((name, _)) => format!("`{name}`"),
                None => "-".to_owned(),
            };
            if row.variable != want {
                problems.push(format!(
                    "{REFERENCE}:{}: {section}.{key}: the environment variable shown is {}, \
                     the shipped config.yaml uses {want}",
                    row.line, row.variable
                ));
            }
        }
    }
    for (section, rows) in &documented {
        let keys = sections.iter().find(|(s, _)| s == section).map(|(_, k)| *k);
        for (key, row) in rows {
            if !keys.is_some_and(|k| k.contains(&key.as_str())) {
                problems.push(format!(
                    "{REFERENCE}:{}: {section}.{key} is not a key of the config structs",
                    row.line
                ));
            }
        }
    }
    for ((section, key), variable) in &shipped {
        if !sections
            .iter()
            .any(|(s, k)| s == section && k.contains(&key.as_str()))
        {
            problems.push(format!("config.yaml sets {section}.{key}, which is no key"));
        }
        // `${VAR}` without a default: .env.template may give it any value (DB_PASSWORD).
        if let Some((name, default)) = variable {
            let listed = template.get(name);
            let missing = listed.is_none();
            if missing || default.as_ref().is_some_and(|d| Some(d) != listed) {
                problems.push(format!(
                    ".env.template: {name} (config.yaml {section}.{key}) is listed as \
                     {listed:?}, config.yaml's default is {default:?}"
                ));
            }
        }
    }
    problems
}

#[test]
fn every_key_of_the_config_structs_is_in_the_reference_with_its_default_and_variable() {
    let problems = problems(
        &repository_file(REFERENCE),
        &repository_file("config.yaml"),
        &repository_file(".env.template"),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A reference with the database section's rows and nothing else.
fn database_table(rows: &[(&str, &str, &str)]) -> String {
    let mut text = String::from(
        "## `database`\n\n| key | default | environment variable | meaning |\n| --- | --- | --- | --- |\n",
    );
    for (key, default, variable) in rows {
        text.push_str(&format!("| `{key}` | {default} | {variable} | m |\n"));
    }
    text
}

#[test]
fn a_missing_key_a_wrong_default_and_a_wrong_variable_are_each_reported() {
    let shipped = "database:\n  host: ${DB_HOST:-localhost}\n";
    let template = "# DB_HOST=localhost\n";
    let reference = database_table(&[
        ("host", "`localhost`", "`DB_HOST`"),
        ("port", "`5433`", "-"),
    ]);
    let found = problems(&reference, shipped, template).join("\n");
    assert!(found.contains("database.user is missing"), "{found}");
    assert!(
        found.contains("database.port: the default shown is `5433`"),
        "{found}"
    );
    assert!(!found.contains("database.host"), "host is right: {found}");
    assert!(found.contains("consumer.port is missing"), "{found}");

    let reference = database_table(&[
        ("host", "`localhost`", "`DB_HOSTS`"),
        ("sslrootcert", "`x`", "-"),
    ]);
    let found = problems(&reference, shipped, template).join("\n");
    assert!(
        found.contains("database.host: the environment variable shown is `DB_HOSTS`"),
        "{found}"
    );
    assert!(
        found.contains("database.sslrootcert: the default shown is `x`"),
        "{found}"
    );

    let reference = database_table(&[("hosts", "`a`", "-")]);
    let found = problems(&reference, shipped, "# DB_HOST=remote\n").join("\n");
    assert!(found.contains("database.hosts is not a key"), "{found}");
    assert!(found.contains(".env.template: DB_HOST"), "{found}");
}

#[test]
fn the_deserializer_names_the_keys_it_accepts() {
    assert_eq!(keys_of::<Config>(), ["database", "consumer", "propagator"]);
    assert!(keys_of::<ConsumerConfig>().contains(&"drain_seconds"));
}

/// `db_init_script.sh`'s variables: every `${NAME:-default}` of an upper-case NAME in the
/// script, with its default, must be a row of the reference's table under its heading.
#[test]
fn every_variable_of_db_init_script_is_in_the_reference_with_its_default() {
    let script = repository_file("db_init_script.sh");
    let mut used = BTreeMap::new();
    for (start, _) in script.match_indices("${") {
        let Some((name, default)) = variable_in(&script[start..]) else {
            continue;
        };
        let upper = name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if let (true, Some(default)) = (upper, default) {
            used.insert(name, default);
        }
    }
    assert!(used.contains_key("DB_HOST"), "{used:?}");
    let reference = repository_file(REFERENCE);
    let table = tables(&reference)
        .into_iter()
        .find(|t| t.heading == "`db_init_script.sh`")
        .expect("docs/configuration.md has a table under `db_init_script.sh`");
    let rows: BTreeMap<&str, &str> = table
        .rows
        .iter()
        .filter_map(|r| Some((code(&r.cells[0])?, r.cells[1].as_str())))
        .collect();
    let mut problems = Vec::new();
    for (name, default) in &used {
        let want = if default.is_empty() {
            "none".to_owned()
        } else {
            format!("`{default}`")
        };
        match rows.get(name.as_str()) {
            None => problems.push(format!("{name} is missing")),
            Some(shown) if *shown != want => problems.push(format!(
                "{name}: shown {shown}, the script's default is {want}"
            )),
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "db_init_script.sh against {REFERENCE}: {}",
        problems.join("; ")
    );
}
