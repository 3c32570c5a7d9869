//! TLS to PostgreSQL: `database.sslmode` and `database.sslrootcert` as the postgres crate's
//! `MakeTlsConnect`, over rustls (ring provider) and tokio-rustls (the async stream the driver's
//! internal runtime needs; our code stays blocking).
//!
//! | sslmode | postgres | certificate |
//! | --- | --- | --- |
//! | `disable` | plain text | - |
//! | `prefer` | TLS if the server offers it, else plain text | not checked (handshake signatures are) |
//! | `require` | TLS or no connection | not checked; with `sslrootcert` set, as `verify-ca` (libpq does the same) |
//! | `verify-ca` | TLS or no connection | chains to a trusted CA; host name not checked |
//! | `verify-full` | TLS or no connection | chains to a trusted CA and is valid for the host connected to |
//!
//! Trusted CAs: those of `sslrootcert`, else the public roots bundled into the binary. A Unix
//! socket host (a path) gets no TLS, as with libpq. The rustls configuration is built once per
//! database configuration ([`DbTls::cached`]) and shared by every connection and reconnect.
//!
//! With several hosts in `database.host`, each is connected to on its own (`connect.rs`):
//! the driver asks [`MakeRustlsConnect`] for a connector with the name of the host it is
//! connecting to, so under `verify-full` every host's certificate is checked against that
//! host's own name, and a host whose certificate does not match is skipped like one that is
//! down. Whether a host is a Unix socket is decided per host too.
//!
//! Channel binding (SCRAM-SHA-256-PLUS) is not offered: the stream reports none, so SCRAM runs
//! without it, as it does over plain text.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::config::{DatabaseConfig, SslMode};
use common::sync::lock;
use common::tls::{self, TlsError};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How connections to the database use TLS: the driver's mode and, unless disabled, the rustls
/// configuration.
#[derive(Debug, Clone)]
pub struct DbTls {
    mode: postgres::config::SslMode,
    connector: Option<MakeRustlsConnect>,
}

impl DbTls {
    /// Builds the TLS setup of `config` for a TCP host, or for a Unix socket (no TLS), reading
    /// `sslrootcert` when it is used.
    pub fn new(config: &DatabaseConfig, unix_socket: bool) -> Result<DbTls, TlsError> {
        use postgres::config::SslMode as Pg;
        let (mode, check) = match config.sslmode {
            _ if unix_socket => (Pg::Disable, None),
            SslMode::Disable => (Pg::Disable, None),
            SslMode::Prefer => (Pg::Prefer, Some(Check::Nothing)),
            SslMode::Require if config.sslrootcert().is_some() => (Pg::Require, Some(Check::Chain)),
            SslMode::Require => (Pg::Require, Some(Check::Nothing)),
            SslMode::VerifyCa => (Pg::Require, Some(Check::Chain)),
            SslMode::VerifyFull => (Pg::Require, Some(Check::ChainAndName)),
        };
        let connector = match check {
            None => None,
            Some(check) => Some(MakeRustlsConnect::new(config, check)?),
        };
        Ok(DbTls { mode, connector })
    }

    /// [`DbTls::new`], built once per distinct TLS setting and then shared: connections
    /// reconnect often during an outage, and a rustls configuration (the root store above
    /// all) is worth building once. A changed CA file takes effect at the next start.
    pub fn cached(config: &DatabaseConfig, unix_socket: bool) -> Result<DbTls, TlsError> {
        type Key = (SslMode, Option<PathBuf>, bool);
        static CACHE: Mutex<Vec<(Key, DbTls)>> = Mutex::new(Vec::new());
        let key: Key = (
            config.sslmode,
            config.sslrootcert().map(PathBuf::from),
            unix_socket,
        );
        let mut cache = lock(&CACHE);
        if let Some((_, tls)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(tls.clone());
        }
        // A failure is not kept: the next attempt (one per backoff interval) reads the file
        // again, so a fixed file is picked up without a restart.
        let tls = DbTls::new(config, unix_socket)?;
        cache.push((key, tls.clone()));
        Ok(tls)
    }

    /// The driver's mode: `Require` for require and verify-*, so it never falls back to plain
    /// text when the server does not offer TLS.
    pub fn postgres_mode(&self) -> postgres::config::SslMode {
        self.mode
    }

    /// The connector for the driver: `DbConnector::Plain` when TLS is disabled.
    pub fn connector(&self) -> DbConnector {
        match &self.connector {
            Some(connector) => DbConnector::Rustls(connector.clone()),
            None => DbConnector::Plain,
        }
    }
}

/// What the driver connects with: rustls, or no TLS (sslmode `disable`, a Unix socket). One
/// type for both, where `postgres::NoTls` would be a second: the driver's connection code is
/// generic over the connector, and a second connector type compiled all of it a second time
/// (the static `make dist` consumer was 32,768 bytes larger with `NoTls` beside it).
///
/// `Plain` goes only with the driver's mode `Disable` ([`DbTls::new`]), under which the driver
/// keeps the plain stream without asking the connector for a handshake; if it ever asked, the
/// handshake fails rather than falling back to plain text.
#[derive(Debug, Clone)]
pub enum DbConnector {
    Plain,
    Rustls(MakeRustlsConnect),
}

impl<S> MakeTlsConnect<S> for DbConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = DbConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<DbConnect> {
        match self {
            DbConnector::Plain => Ok(DbConnect::Plain),
            DbConnector::Rustls(make) => {
                MakeTlsConnect::<S>::make_tls_connect(make, domain).map(DbConnect::Rustls)
            }
        }
    }
}

/// One connection's [`DbConnector`].
#[derive(Debug)]
pub enum DbConnect {
    Plain,
    Rustls(RustlsConnect),
}

impl<S> TlsConnect<S> for DbConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = ConnectFuture<S>;

    fn connect(self, stream: S) -> ConnectFuture<S> {
        match self {
            DbConnect::Rustls(connect) => connect.connect(stream),
            DbConnect::Plain => ConnectFuture {
                handshake: None,
                trusted: Arc::from(""),
            },
        }
    }
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The postgres crate's `MakeTlsConnect` over rustls.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
    /// Which CAs are trusted, for the log line of a certificate that fails verification.
    trusted: Arc<str>,
}

impl std::fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustlsConnect")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl MakeRustlsConnect {
    fn new(config: &DatabaseConfig, check: Check) -> Result<MakeRustlsConnect, TlsError> {
        let provider = tls::provider();
        let (roots, trusted) = match config.sslrootcert() {
            Some(path) => (
                tls::read_root_store("database.sslrootcert", path)?,
                format!("the CAs of database.sslrootcert ({})", path.display()),
            ),
            None => (tls::bundled_roots(), "the bundled public roots".to_owned()),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(AcceptAnyCertificate(Arc::clone(&provider))),
            Check::Chain => Arc::new(ChainOnly(webpki_verifier(roots, &provider))),
            Check::ChainAndName => webpki_verifier(roots, &provider),
        };
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What PostgreSQL 17 requires of direct TLS connections; older servers ignore it.
        client.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect {
            config: Arc::new(client),
            trusted: trusted.into(),
        })
    }
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        // It fails only for an empty root store, and both stores have certificates.
        .expect("a root store with certificates")
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{domain}` is not a host name TLS can check"),
            )
        })?;
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            trusted: Arc::clone(&self.trusted),
            name,
        })
    }
}

/// One handshake's connector.
#[derive(Debug)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    trusted: Arc<str>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = ConnectFuture<S>;

    fn connect(self, stream: S) -> ConnectFuture<S> {
        ConnectFuture {
            handshake: Some(
                tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream),
            ),
            trusted: self.trusted,
        }
    }
}

/// The handshake in progress; `None` for [`DbConnect::Plain`], which fails.
pub struct ConnectFuture<S> {
    handshake: Option<tokio_rustls::Connect<S>>,
    trusted: Arc<str>,
}

impl<S> std::fmt::Debug for ConnectFuture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectFuture")
    }
}

impl<S> ConnectFuture<S> {
    /// A certificate that failed verification in words, with the CAs trusted when it is their
    /// signature that was missing.
    fn explain(&self, error: io::Error) -> io::Error {
        let Some(failure) = tls::io_verification_failure(&error) else {
            return error;
        };
        let unknown_issuer = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .and_then(tls::CertificateProblem::of)
            == Some(tls::CertificateProblem::UnknownIssuer);
        let text = match unknown_issuer {
            true => format!("{failure}; trusted: {}", self.trusted),
            false => failure,
        };
        io::Error::new(io::ErrorKind::InvalidData, CertificateRejected(text))
    }
}

/// A server certificate that failed verification, in words: a type of its own so an outage's
/// cause is told apart as TLS by the error's type, not by its text.
#[derive(Debug)]
pub struct CertificateRejected(pub String);

impl std::fmt::Display for CertificateRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertificateRejected {}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for ConnectFuture<S> {
    type Output = io::Result<RustlsStream<S>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(handshake) = self.handshake.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS is disabled for this connection",
            )));
        };
        match Pin::new(handshake).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(stream)) => Poll::Ready(Ok(RustlsStream(stream))),
            // The driver prefixes "error performing TLS handshake: ".
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.explain(e))),
        }
    }
}

/// A TLS session to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> std::fmt::Debug for RustlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustlsStream")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `prefer` and `require`: any certificate, as libpq accepts under them (the session is
/// encrypted, not authenticated). The handshake's signatures are still verified, so the peer
/// holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not checked. Webpki
/// checks the chain before the name, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as E;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                E::NotValidForName | E::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
