//! The server side of the consumer's TLS: the rustls server configuration built from
//! `consumer.tls_cert_file`, `tls_key_file` and `tls_client_ca_file` (the files read by
//! `common::tls`), and its reload on SIGHUP; [`certificate`] says what the log tells of the
//! certificate (subject, expiry, the warning before it expires); [`refusal`] says why a client
//! certificate was refused. One connection's session is `http::tls`.
//!
//! Each new connection takes the configuration current when it is accepted; a reload swaps it
//! for the connections that follow, and connections already open keep the one they started
//! with. A reload that fails (a file missing or half written, a key that does not match) keeps
//! the configuration in use and logs why.

use std::fmt;
use std::sync::{Arc, RwLock};

use common::config::{ServerTls, ServerTlsFiles};
use common::sync;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

pub mod certificate;
pub mod refusal;

use certificate::{log_certificate, summarize, CertSummary};
use refusal::RefusalLog;

/// Why the HTTPS configuration could not be built.
#[derive(Debug)]
pub enum HttpsError {
    /// A file is missing, unreadable, or does not hold what its key says.
    Files(common::tls::TlsError),
    /// rustls refused the certificate, the key or the client CAs.
    Config(String),
}

impl fmt::Display for HttpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpsError::Files(e) => write!(f, "{e}"),
            HttpsError::Config(why) => write!(f, "the TLS configuration is not usable: {why}"),
        }
    }
}

impl std::error::Error for HttpsError {}

/// The HTTPS configuration in use and the files it was read from.
#[derive(Debug)]
pub struct Https {
    files: ServerTlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// Refused client certificates, logged per kind at warn level.
    pub refusals: RefusalLog,
}

impl Https {
    /// Reads the files and builds the configuration; logs the certificate's subject and
    /// expiry (a warning when it expires within [`certificate::EXPIRY_WARNING`]).
    pub fn load(files: ServerTlsFiles) -> Result<Https, HttpsError> {
        let (config, summary) = build(&files)?;
        log_certificate("serving HTTPS with", summary.as_ref(), &files);
        Ok(Https {
            files,
            current: RwLock::new(config),
            refusals: RefusalLog::default(),
        })
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&sync::read(&self.current))
    }

    /// Reads the files again; on success the next connections use them, on failure the
    /// configuration in use stays. Either way one log line says what happened.
    pub fn reload(&self) -> Result<(), HttpsError> {
        match build(&self.files) {
            Ok((config, summary)) => {
                *sync::write(&self.current) = config;
                log_certificate(
                    "reloaded the TLS certificate:",
                    summary.as_ref(),
                    &self.files,
                );
                Ok(())
            }
            Err(e) => {
                log::error!("TLS reload failed, still serving the previous certificate: {e}");
                Err(e)
            }
        }
    }
}

fn build(files: &ServerTlsFiles) -> Result<(Arc<ServerConfig>, Option<CertSummary>), HttpsError> {
    let ServerTls {
        identity,
        client_roots,
    } = files.load().map_err(HttpsError::Files)?;
    let provider = common::tls::provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| HttpsError::Config(format!("consumer.tls_client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let summary = identity.certs.first().and_then(|c| summarize(c).ok());
    let key = identity.private_key();
    let mut config = builder
        .with_single_cert(identity.certs, key)
        .map_err(|e| HttpsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), summary))
}
