//! HTTPS at the consumer, tried with real TLS clients (rustls by hand, ureq, curl): the
//! contract over TLS, the limits and deadlines, plain HTTP on the TLS port, client
//! certificates, and the certificate reloaded on SIGHUP.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use test_support::{CertFiles, Pki, TestDb};

use crate::helpers::{
    metric_in, read_response, wait_until, ConsumerProcess, ProcessOptions, RawResponse, GOOD_EVENT,
};

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The consumer's `consumer:` lines for HTTPS with `server`, and mutual TLS with `client_ca`.
fn https_yaml(server: &CertFiles, client_ca: Option<&Path>, extra: &str) -> String {
    let mut yaml = format!(
        "  tls_cert_file: {}\n  tls_key_file: {}\n",
        server.cert.display(),
        server.key.display()
    );
    if let Some(ca) = client_ca {
        yaml.push_str(&format!("  tls_client_ca_file: {}\n", ca.display()));
    }
    yaml.push_str(extra);
    yaml
}

fn start(db: &TestDb, consumer_yaml: &str) -> ConsumerProcess {
    ConsumerProcess::start_with(
        db,
        ProcessOptions {
            consumer_yaml,
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    )
}

fn client_config(ca: &Path, client: Option<&CertFiles>) -> Arc<ClientConfig> {
    let roots = common::tls::read_root_store("test ca", ca).unwrap();
    let builder = ClientConfig::builder_with_provider(common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(files) => {
            let identity =
                common::tls::Identity::load("cert", &files.cert, "key", &files.key).unwrap();
            let key = identity.private_key();
            builder.with_client_auth_cert(identity.certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A TLS connection to the consumer as `localhost`, handshake not yet done (it happens at the
/// first read or write).
fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp)
}

/// Completes the handshake: Ok when the server accepted it.
fn handshake(stream: &mut TlsStream) -> std::io::Result<()> {
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    // TLS 1.3: a refused client certificate shows at the first read after the handshake.
    stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut byte = [0u8; 1];
    let result = match stream.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    result
}

fn post_request(key: &str) -> String {
    format!(
        "POST /event HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{GOOD_EVENT}",
        GOOD_EVENT.len()
    )
}

fn get_metrics(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let mut stream = tls_connect(addr, config);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut BufReader::new(stream)).unwrap().body
}

#[test]
fn over_https_events_are_stored_with_keep_alive_and_pipelining() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost", "127.0.0.1"]);
    let db = TestDb::new();
    let consumer = start(&db, &https_yaml(&server, None, ""));
    let config = client_config(pki.ca_file(), None);

    let mut stream = tls_connect(consumer.addr, Arc::clone(&config));
    // Two requests in one write, then a third on the same connection.
    stream
        .write_all(format!("{}{}", post_request("tls-1"), post_request("tls-2")).as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader).unwrap();
    let second = read_response(&mut reader).unwrap();
    assert_eq!((first.status, second.status), (201, 201));
    reader
        .get_mut()
        .write_all(post_request("tls-1").as_bytes())
        .unwrap();
    let again = read_response(&mut reader).unwrap();
    assert_eq!(again.status, 200, "a repeated key over the same connection");
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(db.count_events(), 2);

    // A third-party client: ureq with rustls, trusting our CA.
    let roots = common::tls::read_ca_certificates("ca", pki.ca_file()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(
                    &roots
                        .iter()
                        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                        .collect::<Vec<_>>(),
                ))
                .build(),
        )
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("https://localhost:{}/event", consumer.addr.port());
    for i in 0..3 {
        let response = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(GOOD_EVENT)
            .unwrap_or_else(|e| panic!("ureq request {i} over HTTPS: {e}"));
        assert_eq!(response.status(), 201);
    }
    assert_eq!(db.count_events(), 5);
}

#[test]
fn curl_reaches_the_https_consumer_with_cacert_as_the_readme_shows() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: this test checks nothing");
        return;
    }
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost", "127.0.0.1"]);
    let client = pki.client_cert("device-1", "device-1");
    let db = TestDb::new();
    let consumer = start(&db, &https_yaml(&server, Some(pki.ca_file()), ""));
    let url = format!("https://localhost:{}/event", consumer.addr.port());
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .arg("--cacert")
            .arg(pki.ca_file())
            .args(extra)
            .args(["-H", "Content-Type: application/json", "-d", GOOD_EVENT])
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cert = client.cert.to_str().unwrap();
    let key = client.key.to_str().unwrap();
    assert_eq!(curl(&["--cert", cert, "--key", key]), "201");
    assert_eq!(
        curl(&[]),
        "000",
        "without a client certificate the handshake fails"
    );
}

#[test]
fn the_http_limits_and_deadlines_hold_over_tls_including_the_handshake() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost"]);
    let db = TestDb::new();
    let consumer = start(
        &db,
        &https_yaml(
            &server,
            None,
            "  read_timeout_seconds: 1\n  max_header_bytes: 4096\n",
        ),
    );
    let config = client_config(pki.ca_file(), None);

    let mut stream = tls_connect(consumer.addr, Arc::clone(&config));
    stream
        .write_all(
            b"POST /event HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000\r\n\r\n",
        )
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream)).unwrap().status,
        413
    );

    let mut stream = tls_connect(consumer.addr, Arc::clone(&config));
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8000)
    );
    stream.write_all(huge.as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream)).unwrap().status,
        431
    );

    // Half a head, then silence: 408 at read_timeout_seconds.
    let mut stream = tls_connect(consumer.addr, Arc::clone(&config));
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream)).unwrap().status,
        408
    );

    // A client that opens the connection and never starts the handshake is cut off at
    // read_timeout_seconds too (not at the 30 s idle timeout).
    let mut silent = TcpStream::connect(consumer.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let opened = Instant::now();
    let mut buf = [0u8; 16];
    let end = silent.read(&mut buf);
    let waited = opened.elapsed();
    assert!(
        matches!(end, Ok(0)) || end.is_err(),
        "the silent connection was closed: {end:?}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "cut off after {waited:?}, not at the idle timeout"
    );
    let metrics = get_metrics(consumer.addr, config);
    assert!(
        metric_in(&metrics, "event_consumer_tls_handshake_failures_total").unwrap() >= 1.0,
        "{metrics}"
    );
}

#[test]
fn plain_http_on_the_tls_port_gets_400_in_plain_text_and_the_port_keeps_serving() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost"]);
    let db = TestDb::new();
    let consumer = start(&db, &https_yaml(&server, None, ""));
    for _ in 0..3 {
        let mut plain = TcpStream::connect(consumer.addr).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let response: RawResponse = read_response(&mut BufReader::new(plain)).unwrap();
        assert_eq!(response.status, 400);
        assert!(response.body.contains("https"), "{}", response.body);
    }
    let config = client_config(pki.ca_file(), None);
    let mut stream = tls_connect(consumer.addr, Arc::clone(&config));
    stream
        .write_all(post_request("after-plain").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream)).unwrap().status,
        201
    );
    let metrics = get_metrics(consumer.addr, config);
    assert_eq!(
        metric_in(&metrics, "event_consumer_tls_plain_http_total"),
        Some(3.0)
    );
    consumer.signal("TERM");
    let (_, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(
        log.matches("plain HTTP from").count(),
        1,
        "one line for a burst:\n{log}"
    );
}

#[test]
fn with_a_client_ca_only_clients_with_a_certificate_from_it_get_through() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let server = pki.server_cert("server", &["localhost"]);
    let device = pki.client_cert("device-1", "device-1");
    let expired = pki.expired_client_cert("device-old", "device-old");
    let foreign = stranger.client_cert("intruder", "intruder");
    let db = TestDb::new();
    let consumer = start(&db, &https_yaml(&server, Some(pki.ca_file()), ""));

    let mut stream = tls_connect(consumer.addr, client_config(pki.ca_file(), Some(&device)));
    stream.write_all(post_request("mtls-1").as_bytes()).unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(stream)).unwrap().status,
        201
    );

    let refused = [
        ("no client certificate", None),
        ("an expired certificate", Some(&expired)),
        ("a certificate from another CA", Some(&foreign)),
    ];
    for (what, cert) in refused {
        let mut stream = tls_connect(consumer.addr, client_config(pki.ca_file(), cert));
        assert!(
            handshake(&mut stream).is_err(),
            "the handshake with {what} must fail"
        );
    }
    let mut stream = tls_connect(consumer.addr, client_config(pki.ca_file(), Some(&device)));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let metrics = read_response(&mut BufReader::new(stream)).unwrap().body;
    assert_eq!(
        metric_in(&metrics, "event_consumer_tls_handshake_failures_total"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(db.count_events(), 1);
    consumer.signal("TERM");
    let (_, log) = consumer.wait(Duration::from_secs(20));
    assert!(
        !log.contains("TLS with"),
        "no line per failed handshake at info level:\n{log}"
    );
}

#[test]
fn sighup_swaps_the_certificate_and_a_broken_new_file_keeps_the_old_one() {
    let old_ca = Pki::new();
    let new_ca = Pki::new();
    let old = old_ca.server_cert("old", &["localhost"]);
    let new = new_ca.server_cert("new", &["localhost"]);
    let dir = old_ca.dir().join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let served = CertFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::copy(&old.cert, &served.cert).unwrap();
    std::fs::copy(&old.key, &served.key).unwrap();
    let db = TestDb::new();
    let consumer = start(&db, &https_yaml(&served, None, ""));
    let trusts_old = client_config(old_ca.ca_file(), None);
    let trusts_new = client_config(new_ca.ca_file(), None);
    let accepted = |config: &Arc<ClientConfig>| {
        let mut stream = tls_connect(consumer.addr, Arc::clone(config));
        handshake(&mut stream).is_ok()
    };
    assert!(accepted(&trusts_old));
    assert!(!accepted(&trusts_new));

    std::fs::copy(&new.cert, &served.cert).unwrap();
    std::fs::copy(&new.key, &served.key).unwrap();
    consumer.signal("HUP");
    wait_until(
        "the new certificate is served",
        Duration::from_secs(10),
        || accepted(&trusts_new),
    );
    assert!(
        !accepted(&trusts_old),
        "the old certificate is no longer served"
    );

    // A new certificate file without its matching key: the reload fails, the new (current)
    // certificate stays.
    std::fs::copy(&old.cert, &served.cert).unwrap();
    consumer.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        accepted(&trusts_new),
        "a failed reload keeps what was served"
    );
    std::fs::write(&served.cert, "not a certificate").unwrap();
    consumer.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(accepted(&trusts_new));

    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        log.matches("reloaded the TLS certificate").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("TLS reload failed").count(), 2, "{log}");
    assert!(
        log.contains("consumer.tls_key_file") && log.contains("consumer.tls_cert_file"),
        "each failure names the key at fault:\n{log}"
    );
}

#[test]
fn an_expiring_certificate_is_logged_as_a_warning_at_start() {
    let pki = Pki::new();
    let expired = pki.expired_server_cert("expired", &["localhost"]);
    let db = TestDb::new();
    let consumer = start(&db, &https_yaml(&expired, None, ""));
    consumer.signal("TERM");
    let (_, log) = consumer.wait(Duration::from_secs(20));
    let line = log
        .lines()
        .find(|l| l.contains("serving HTTPS with"))
        .unwrap_or_else(|| panic!("a line names the certificate:\n{log}"));
    assert!(
        line.contains("WARN") && line.contains("2001-01-01"),
        "{line}"
    );
}

#[test]
fn unusable_https_files_exit_2_naming_the_key_and_the_file() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost"]);
    let other = pki.server_cert("other", &["localhost"]);
    let not_pem = pki.dir().join("empty.pem");
    std::fs::write(&not_pem, "no certificate here\n").unwrap();
    let missing = pki.dir().join("missing.pem");
    let db = TestDb::new();
    let cases = [
        (
            "a missing certificate file",
            missing.clone(),
            server.key.clone(),
            "consumer.tls_cert_file",
        ),
        (
            "a PEM without a certificate",
            not_pem.clone(),
            server.key.clone(),
            "consumer.tls_cert_file",
        ),
        (
            "a key of another certificate",
            server.cert.clone(),
            other.key.clone(),
            "consumer.tls_key_file",
        ),
    ];
    for (what, cert, key, named) in cases {
        let files = CertFiles { cert, key };
        let config = db.database_config();
        let yaml = format!(
            "database:\n  host: {}\n  port: {}\n  user: {}\n  dbname: {}\nconsumer:\n  port: 0\n{}",
            config.host,
            config.port,
            config.user,
            config.dbname,
            https_yaml(&files, None, "")
        );
        let path = pki.dir().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_event_consumer"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains(named), "{what} names {named}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
    }
}

/// Runs `openssl` with the words of `command` as arguments, in `dir`: the test needs it, as an
/// operator would have used it.
fn openssl(dir: &Path, command: &str) {
    let out = Command::new("openssl")
        .args(command.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("this test runs openssl, which did not start: {e}"));
    assert!(
        out.status.success(),
        "openssl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs `client.csr` with the openssl CA of `dir` into `out`, as the operator's guide would.
fn openssl_sign(dir: &Path, out: &str, extra: &str) {
    openssl(
        dir,
        &format!(
            "x509 -req -in client.csr -CA ossl-ca.pem -CAkey ossl-ca.key -CAcreateserial \
             -days 2 -out {out} {extra}"
        ),
    );
}

/// A client presenting `cert` (PEM) with `key`, sent as it is: rustls' client-side helpers
/// would refuse to load a certificate that its server side refuses.
fn client_config_sending(ca: &Path, cert: &Path, key: &Path) -> Arc<ClientConfig> {
    let certs = common::tls::read_certificates("cert", cert).unwrap();
    let key = common::tls::read_private_key("key", key).unwrap();
    let provider = common::tls::provider();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    let sender =
        rustls::sign::SingleCertAndKey::from(rustls::sign::CertifiedKey::new(certs, signing_key));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(common::tls::read_root_store("test ca", ca).unwrap())
        .with_client_cert_resolver(Arc::new(sender));
    Arc::new(config)
}

#[test]
fn an_x509_v1_client_certificate_is_refused_with_one_warning_that_says_why_and_how_to_fix_it() {
    let pki = Pki::new();
    let server = pki.server_cert("server", &["localhost"]);
    // As an operator would: a CA, and a client certificate signed with `openssl x509 -req`
    // and no extensions file, which makes an X.509 v1 certificate.
    let dir = pki.dir();
    let new_key = "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!(
            "{new_key} -x509 -days 2 -keyout ossl-ca.key -out ossl-ca.pem -subj /CN=openssl-CA"
        ),
    );
    openssl(
        dir,
        &format!("{new_key} -keyout client.key -out client.csr -subj /CN=device-v1"),
    );
    openssl_sign(dir, "v1.pem", "");
    let db = TestDb::new();
    let consumer = start(
        &db,
        &https_yaml(&server, Some(&dir.join("ossl-ca.pem")), ""),
    );
    let config = client_config_sending(pki.ca_file(), &dir.join("v1.pem"), &dir.join("client.key"));
    for attempt in 0..3 {
        let mut stream = tls_connect(consumer.addr, Arc::clone(&config));
        assert!(
            handshake(&mut stream).is_err(),
            "attempt {attempt}: the v1 certificate must be refused"
        );
    }
    // The hint works: the same key signed with an extensions file is let in, and it sees the
    // three refusals counted (each was logged before it was counted).
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    openssl_sign(dir, "v3.pem", "-extfile client.ext");
    let v3 = CertFiles {
        cert: dir.join("v3.pem"),
        key: dir.join("client.key"),
    };
    let metrics = get_metrics(consumer.addr, client_config(pki.ca_file(), Some(&v3)));
    assert_eq!(
        metric_in(&metrics, "event_consumer_tls_handshake_failures_total"),
        Some(3.0),
        "{metrics}"
    );
    consumer.signal("TERM");
    let (_, log) = consumer.wait(Duration::from_secs(20));
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("client certificate from"))
        .collect();
    assert_eq!(warnings.len(), 1, "one line for three refusals:\n{log}");
    let line = warnings[0];
    assert!(line.contains("WARN"), "at warn level: {line}");
    assert!(
        line.contains("X.509 v1 certificate") && line.contains("extensions file"),
        "the reason and the hint: {line}"
    );
}
