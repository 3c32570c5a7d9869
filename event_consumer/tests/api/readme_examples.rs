//! The HTTP examples of the README and of docs/http-api.md, run as written: they cannot drift
//! from what the consumer says.
//!
//! Every `curl` command in a ```` ```sh ```` block of either document that talks to `localhost:8080`
//! is an example, and the `# ` lines right under it are its answer as `curl -i` prints it: the
//! status line (`# HTTP/1.1 201 Created`), then any headers that must be there
//! (`# Allow: POST`), then the body. Each command runs with bash (`set -o pipefail`), in document
//! order, with `localhost:8080` pointed at a consumer on a fresh database of its own document.
//! Which consumer is written in the block, above the examples: a line
//! `# against: a consumer with consumer.auth_token: s3cret` (settings as `consumer.KEY: VALUE`,
//! parsed by the config parser itself) or `# against: ... the defaults ...` (no settings), so
//! the reader sees what the test runs. An example with no such line before it in its block
//! fails. File settings name files of the certificate directory, where the documented openssl
//! recipe (the `bash` block of docs/http-api.md's HTTPS section) made the certificates, and
//! where every command runs.
//! Bodies compare as JSON where the expected body is JSON: a string `"..."` stands for any
//! value, and a `received_at`-shaped timestamp for any timestamp (ids are exact: a fresh
//! database gives the documented ids when the examples run in order). An example without its
//! answer fails, so every example states one. Needs curl, gzip, bash and openssl, as the examples do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::helpers::TestApp;

/// One example: where it is, what runs, what must come back.
#[derive(Debug, Clone)]
struct Example {
    line: usize,
    command: String,
    expected: Vec<String>,
    /// The consumer its block names (`# against:`); None when the block names none.
    against: Option<Against>,
}

impl Example {
    fn https(&self) -> bool {
        self.command.contains("https://")
    }
}

/// The consumer settings a `# against:` line names, as `consumer.KEY: VALUE` pairs in order;
/// empty for the defaults.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Against(Vec<(String, String)>);

const AGAINST: &str = "# against:";

/// Reads a `# against:` line: every `consumer.KEY: VALUE` in it (a value ends at a comma, a
/// space or a parenthesis), or none when it says "the defaults"; Err when it says neither.
fn against(line: &str) -> Result<Against, String> {
    let text = line.trim_start().trim_start_matches(AGAINST);
    let mut settings = Vec::new();
    for (start, _) in text.match_indices("consumer.") {
        let rest = &text[start + "consumer.".len()..];
        let key_length = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        // `consumer.crt` (a file name in a value) is no setting: a key is followed by `: `.
        let (key, Some(value)) = (&rest[..key_length], rest[key_length..].strip_prefix(": "))
        else {
            continue;
        };
        let value: String = value
            .chars()
            .take_while(|c| !matches!(c, ',' | ' ' | ')'))
            .collect();
        settings.push((key.to_owned(), value));
    }
    if settings.is_empty() && !text.contains("the defaults") {
        return Err(format!(
            "`{line}` names neither `consumer.KEY: VALUE` settings nor the defaults"
        ));
    }
    Ok(Against(settings))
}

const README_ADDRESS: &str = "localhost:8080";

/// The examples of `readme`, or the lines of those that state no answer.
fn examples(readme: &str) -> Result<Vec<Example>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut found = Vec::new();
    let mut in_sh = false;
    let mut current: Option<Against> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            current = None;
            i += 1;
            continue;
        }
        if in_sh && line.trim_start().starts_with(AGAINST) {
            current = Some(against(line).map_err(|e| format!("line {}: {e}", i + 1))?);
            i += 1;
            continue;
        }
        if !in_sh || line.trim().is_empty() || line.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        // A command: continued by a trailing backslash or by a next line that starts a pipe.
        let start = i;
        let mut command = String::from(line);
        while i + 1 < lines.len()
            && (command.ends_with('\\') || lines[i + 1].trim_start().starts_with('|'))
        {
            i += 1;
            command.push('\n');
            command.push_str(lines[i]);
        }
        i += 1;
        let mut expected = Vec::new();
        while i < lines.len() && lines[i].starts_with("# ") && !lines[i].starts_with(AGAINST) {
            expected.push(lines[i][2..].to_string());
            i += 1;
        }
        if command.contains(README_ADDRESS) && command.contains("curl ") {
            found.push(Example {
                line: start + 1,
                command,
                expected,
                against: current.clone(),
            });
        }
    }
    let silent: Vec<String> = found
        .iter()
        .filter(|e| !e.expected.first().is_some_and(|s| s.starts_with("HTTP/")))
        .map(|e| format!("line {}", e.line))
        .collect();
    if !silent.is_empty() {
        return Err(format!(
            "examples without their answer (`# HTTP/1.1 NNN ...` under the command): {}",
            silent.join(", ")
        ));
    }
    let unnamed: Vec<String> = found
        .iter()
        .filter(|e| e.against.is_none())
        .map(|e| format!("line {}", e.line))
        .collect();
    if !unnamed.is_empty() {
        return Err(format!(
            "examples whose block names no consumer (a `{AGAINST} ...` line above them): {}",
            unnamed.join(", ")
        ));
    }
    Ok(found)
}

/// What `curl -i` printed of the final answer.
struct Answer {
    status: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: String,
}

/// The final answer in `curl -i`'s output (interim 1xx answers skipped).
fn split_answer(output: &str) -> Option<Answer> {
    let mut rest = output;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.trim().to_string();
        if status.split(' ').nth(1).is_some_and(|c| c.starts_with('1')) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return Some(Answer {
            status,
            headers,
            body: body.to_string(),
        });
    }
}

fn looks_like_timestamp(s: &str) -> bool {
    // 2026-11-26T21:40:12.123456Z
    let b = s.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `expected` (from the README) matches `actual`: "..." matches anything, a timestamp any
/// timestamp, everything else exactly (objects by key, arrays in order).
fn json_matches(expected: &serde_json::Value, actual: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (expected, actual) {
        (Value::String(e), _) if e == "..." => true,
        (Value::String(e), Value::String(a)) if looks_like_timestamp(e) => looks_like_timestamp(a),
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| json_matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| json_matches(ev, av))
        }
        _ => expected == actual,
    }
}

/// Runs one example against the consumer at `addr`, in `dir`; Err says what differs.
fn check(example: &Example, addr: &str, dir: &Path) -> Result<(), String> {
    let command = example.command.replace(README_ADDRESS, addr);
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail\n{command}"))
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(Answer {
        status,
        headers,
        body,
    }) = split_answer(&stdout)
    else {
        return Err(format!(
            "no HTTP answer (exit {:?}); stdout: {stdout:?}; stderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
    };
    let mut expected = example.expected.iter();
    let want_status = expected.next().map(String::as_str).unwrap_or_default();
    if status != want_status {
        return Err(format!(
            "status `{status}`, the README says `{want_status}`"
        ));
    }
    let mut want_body = None;
    for line in expected {
        match line.split_once(": ") {
            Some((name, value)) if want_body.is_none() && !line.starts_with(['{', '[']) => {
                let got = headers
                    .iter()
                    .find(|(n, _)| *n == name.to_ascii_lowercase())
                    .map(|(_, v)| v.as_str());
                if got != Some(value) {
                    return Err(format!("header {name}: {got:?}, the README says `{value}`"));
                }
            }
            _ => want_body = Some(line.as_str()),
        }
    }
    if let Some(want) = want_body {
        let matches = match (
            serde_json::from_str::<serde_json::Value>(want),
            serde_json::from_str::<serde_json::Value>(&body),
        ) {
            (Ok(e), Ok(a)) => json_matches(&e, &a),
            _ => body.trim() == want,
        };
        if !matches {
            return Err(format!("body `{}`, the README says `{want}`", body.trim()));
        }
    }
    Ok(())
}

/// The documents whose examples run: the README's first event, then the API reference. Each
/// runs against consumers of its own, so each document's ids count from 1.
const DOCUMENTS: [&str; 2] = ["README.md", "docs/http-api.md"];

fn document(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the README's openssl recipe (the `bash` block that makes `ca.crt`) in `dir`.
fn make_readme_certificates(readme: &str, dir: &Path) {
    let block = readme
        .split("```bash\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.contains("openssl req -x509"))
        .expect("README's HTTPS section has the openssl recipe in a ```bash block");
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{block}"))
        .current_dir(dir)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "the README's openssl recipe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tools_present() {
    for tool in ["curl", "gzip", "bash", "openssl"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        assert!(
            found,
            "{tool} is missing: the README's examples need it (Debian: apt-get install {tool})"
        );
    }
}

#[test]
fn every_http_example_in_the_readme_gives_the_answer_shown_under_it() {
    tools_present();
    let certificates = std::env::temp_dir().join(format!("readme-pki-{}", std::process::id()));
    std::fs::create_dir_all(&certificates).unwrap();
    make_readme_certificates(&document("docs/http-api.md"), &certificates);
    let (mut total, mut https, mut failures) = (0, 0, Vec::new());
    for name in DOCUMENTS {
        let examples = examples(&document(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!examples.is_empty(), "{name} has no HTTP example");
        total += examples.len();
        https += examples.iter().filter(|e| e.https()).count();
        failures.extend(run_examples(name, &examples, &certificates));
    }
    std::fs::remove_dir_all(&certificates).ok();
    assert!(
        total >= 15,
        "found only {total} examples: has the documents' format changed?"
    );
    assert!(
        https >= 2,
        "the HTTPS examples are gone from docs/http-api.md"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs one document's examples in order, each against the consumer its block names: one
/// consumer per distinct `# against:` settings, started when first named.
fn run_examples(name: &str, examples: &[Example], certificates: &Path) -> Vec<String> {
    let mut consumers: BTreeMap<Against, TestApp> = BTreeMap::new();
    let mut failures = Vec::new();
    for example in examples {
        let against = example
            .against
            .clone()
            .expect("examples() refuses unnamed ones");
        if !consumers.contains_key(&against) {
            match consumer(&against, certificates) {
                Ok(app) => {
                    consumers.insert(against.clone(), app);
                }
                Err(e) => {
                    failures.push(format!("{name} line {}: {e}", example.line));
                    continue;
                }
            }
        }
        let app = &consumers[&against];
        if let Err(e) = check(example, &app.addr.to_string(), certificates) {
            failures.push(format!(
                "{name} line {}: {e}\n  {}",
                example.line, example.command
            ));
        }
    }
    failures
}

/// A consumer with the settings of `against`, parsed as a config file would be; file names
/// are taken in `certificates`.
fn consumer(against: &Against, certificates: &Path) -> Result<TestApp, String> {
    let mut text = String::from("consumer:\n");
    for (key, value) in &against.0 {
        text.push_str(&format!("  {key}: {value}\n"));
    }
    let parsed = common::Config::from_yaml(&text, Path::new("# against:"), |_| None)
        .map_err(|e| format!("the `# against:` settings do not parse: {e}"))?
        .consumer;
    let file = |path: &Option<std::path::PathBuf>| path.as_ref().map(|p| certificates.join(p));
    for (key, _) in &against.0 {
        if !matches!(
            key.as_str(),
            "auth_token" | "tls_cert_file" | "tls_key_file" | "tls_client_ca_file"
        ) {
            return Err(format!(
                "`# against:` names consumer.{key}: this test starts consumers with \
                 auth_token and the tls_* files only; add it to consumer()"
            ));
        }
    }
    Ok(TestApp::spawn_with(|c| {
        c.consumer.auth_token = parsed.auth_token.clone();
        c.consumer.tls_cert_file = file(&parsed.tls_cert_file);
        c.consumer.tls_key_file = file(&parsed.tls_key_file);
        c.consumer.tls_client_ca_file = file(&parsed.tls_client_ca_file);
    }))
}

#[test]
fn an_example_whose_answer_differs_fails_and_one_without_an_answer_is_refused() {
    tools_present();
    let app = TestApp::spawn();
    let broken =
        "```sh\n# against: the defaults\ncurl -si localhost:8080/healthz\n# HTTP/1.1 500 Internal Server Error\n```\n";
    let found = examples(broken).unwrap();
    let error = check(&found[0], &app.addr.to_string(), Path::new(".")).unwrap_err();
    assert!(error.contains("HTTP/1.1 200 OK"), "{error}");
    let right =
        "```sh\n# against: the defaults\ncurl -si localhost:8080/healthz\n# HTTP/1.1 200 OK\n# {\"status\":\"...\"}\n```\n";
    check(
        &examples(right).unwrap()[0],
        &app.addr.to_string(),
        Path::new("."),
    )
    .unwrap();
    let wrong_body =
        "```sh\n# against: the defaults\ncurl -si localhost:8080/healthz\n# HTTP/1.1 200 OK\n# {\"status\":\"down\"}\n```\n";
    assert!(check(
        &examples(wrong_body).unwrap()[0],
        &app.addr.to_string(),
        Path::new(".")
    )
    .is_err());
    let silent = "```sh\n# against: the defaults\ncurl -si localhost:8080/healthz\n```\n";
    assert!(examples(silent).unwrap_err().contains("line 3"));
}

#[test]
fn the_consumer_of_an_example_is_read_from_its_block_and_one_without_it_is_refused() {
    let text = "```sh\n# against: a consumer with consumer.auth_token: s3cret\n\
                curl -si localhost:8080/healthz\n# HTTP/1.1 200 OK\n\n\
                # against: one with consumer.tls_cert_file: consumer.crt, consumer.tls_key_file: c.key (above)\n\
                curl -si localhost:8080/healthz\n# HTTP/1.1 200 OK\n```\n\
                ```sh\ncurl -si localhost:8080/healthz\n# HTTP/1.1 200 OK\n```\n";
    let error = examples(text).unwrap_err();
    assert!(
        error.contains("line 11") && error.contains("names no consumer"),
        "{error}"
    );
    let named = examples(&text[..text.rfind("```sh").unwrap()]).unwrap();
    assert_eq!(
        named[0].against,
        Some(Against(vec![("auth_token".into(), "s3cret".into())]))
    );
    assert_eq!(
        named[1].against,
        Some(Against(vec![
            ("tls_cert_file".into(), "consumer.crt".into()),
            ("tls_key_file".into(), "c.key".into())
        ]))
    );
    assert_eq!(named[0].expected, ["HTTP/1.1 200 OK"]);
    assert!(against("# against: somewhere").is_err());
    assert_eq!(
        against("# against: the defaults (make)"),
        Ok(Against(vec![]))
    );
}

#[test]
fn expected_bodies_match_with_wildcards_and_timestamps_only() {
    let e = serde_json::json!({"id": 4, "received_at": "2026-11-26T21:40:12.123456Z", "x": "..."});
    let a = serde_json::json!({"id": 4, "received_at": "2030-01-01T00:00:00.000001Z", "x": [1]});
    assert!(json_matches(&e, &a));
    let other_id =
        serde_json::json!({"id": 5, "received_at": "2030-01-01T00:00:00.000001Z", "x": 1});
    assert!(!json_matches(&e, &other_id));
    let extra =
        serde_json::json!({"id": 4, "received_at": "2030-01-01T00:00:00.000001Z", "x": 1, "y": 2});
    assert!(!json_matches(&e, &extra));
}
