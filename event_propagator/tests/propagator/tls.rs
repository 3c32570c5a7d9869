//! `https://` endpoints against a TLS receiver (rustls over std's TcpListener): the CA of
//! `tls_ca_file`, client certificates for a server that requires them, a wrong CA retried as a
//! connection error, bad TLS files refused at start.

use std::time::Duration;

use event_propagator::{run, Stop};
use test_support::Pki;

use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn delivers_over_https_to_a_server_signed_by_the_ca_of_tls_ca_file() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost", "127.0.0.1"]);
    let receiver = Receiver::https(https_config(&server, None), |_, _| Reply::status(201));
    let dir = TempDir::new();
    let mut settings = settings(&dir, &receiver.url());
    settings.tls.ca_file = Some(pki.ca_file().to_owned());
    settings.count = Some(3);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.sent, summary.delivered), (3, 3));
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(receiver.connections(), 1, "one kept-alive TLS connection");
}

#[test]
fn presents_its_client_certificate_to_a_server_that_requires_one() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["127.0.0.1"]);
    let client = pki.client_cert("client", "event_propagator");
    let config = https_config(&server, Some(pki.ca_file()));
    let receiver = Receiver::https(config, |_, _| Reply::status(201));
    let dir = TempDir::new();
    let mut settings = settings(&dir, &receiver.url());
    settings.tls.ca_file = Some(pki.ca_file().to_owned());
    settings.tls.client_identity = Some((client.cert, client.key));
    settings.count = Some(2);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(summary.delivered, 2);
    assert_eq!(receiver.client_certificates(), 1);
    assert_eq!(receiver.failed_handshakes(), 0);
}

#[test]
fn without_a_client_certificate_a_server_that_requires_one_never_gets_the_event() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["127.0.0.1"]);
    let config = https_config(&server, Some(pki.ca_file()));
    let receiver = Receiver::https(config, |_, _| Reply::status(201));
    let dir = TempDir::new();
    let mut settings = settings(&dir, &receiver.url());
    settings.tls.ca_file = Some(pki.ca_file().to_owned());
    settings.max_retries = 1;
    settings.count = Some(1);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.delivered, summary.given_up), (0, 1));
    assert_eq!(summary.exit_code(), 1);
    assert!(receiver.requests().is_empty());
    assert!(receiver.failed_handshakes() >= 1);
}

#[test]
fn a_server_of_another_ca_is_retried_logged_once_and_count_1_exits_1() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let server = stranger.server_cert("server", &["127.0.0.1"]);
    let receiver = Receiver::https(https_config(&server, None), |_, _| Reply::status(201));
    let dir = TempDir::new();
    let ca = pki.ca_file().display().to_string();
    write_config(&dir, &receiver.url(), &format!("  tls_ca_file: {ca}\n"));
    let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert_eq!(code, 1, "{stderr}");
    // The first attempt and its 3 retries (max_retries: 3 in write_config). The receiver
    // counts a failed handshake on its own thread, which may finish after the propagator exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while receiver.failed_handshakes() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(receiver.failed_handshakes(), 4, "{stderr}");
    assert!(receiver.requests().is_empty());
    // Retry warnings are limited to one a second: these retries take a fraction of that, so
    // one line (two if the machine stalls for a second meanwhile), not one per retry.
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(
        (1..=2).contains(&warnings.len()),
        "one warning for the retries: {stderr}"
    );
    assert!(
        warnings[0].contains("the certificate failed verification")
            && warnings[0].contains("UnknownIssuer"),
        "{stderr}"
    );
    assert!(summary_line(&stderr).contains("given_up=1"), "{stderr}");
}

#[test]
fn bad_tls_files_exit_2_naming_the_key_and_the_file() {
    let pki = Pki::new();
    let other = pki.client_cert("other", "someone else");
    let client = pki.client_cert("client", "event_propagator");
    let dir = TempDir::new();
    let not_pem = dir.write("not-pem.txt", "hello\n");
    let cases = [
        (
            "  tls_ca_file: /nonexistent/ca.pem\n".to_owned(),
            "propagator.tls_ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            format!("  tls_ca_file: {}\n", not_pem.display()),
            "no certificate in the PEM file",
        ),
        (
            format!(
                "  tls_client_cert_file: {}\n  tls_client_key_file: {}\n",
                client.cert.display(),
                other.key.display()
            ),
            "propagator.tls_client_key_file",
        ),
        (
            format!("  tls_client_cert_file: {}\n", client.cert.display()),
            "set both or neither",
        ),
    ];
    for (yaml, needle) in cases {
        write_config(&dir, "https://127.0.0.1:9/event", &yaml);
        let (code, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
        assert_eq!(code, 2, "{yaml}: {stderr}");
        assert!(stderr.contains(needle), "{yaml}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{yaml}: {stderr}");
    }
    // The mismatch names both files.
    write_config(
        &dir,
        "https://127.0.0.1:9/event",
        &format!(
            "  tls_client_cert_file: {}\n  tls_client_key_file: {}\n",
            client.cert.display(),
            other.key.display()
        ),
    );
    let (_, stderr) = run_binary(&dir, &["--count", "1"], LIMIT);
    assert!(
        stderr.contains("the key does not match the certificate")
            && stderr.contains(&other.key.display().to_string())
            && stderr.contains(&client.cert.display().to_string()),
        "{stderr}"
    );
}
