//! PEM files for TLS, as every TLS side of the system needs them: the consumer's server
//! certificate, key and client CA, the propagator's CA and client certificate, the database's
//! root certificate. Every PEM file of the system is read here ([`read_pem`]); each side builds
//! its TLS library's configuration from what these functions return: the consumer's server side
//! (`event_consumer/src/https/`) and database side, the propagator's client side.
//!
//! Each error names the config key and the file and says what is wrong, never what the file
//! holds (a key file is a secret). Files are read as the config file is: regular files only,
//! with a size limit. The crypto provider is rustls's `ring` one everywhere ([`provider`]): pure
//! Rust apart from ring's own C and assembly, so static musl builds keep working (aws-lc-rs
//! needs cmake and doubles the binary).
//!
//! Without a CA file of their own, clients trust the Mozilla root store bundled into the binary
//! (`webpki-roots`, [`bundled_roots`]), not the system's `/etc/ssl/certs`: the same roots on
//! every machine, also in the busybox image and under systemd's file-system protection, which
//! have no CA bundle to read. A private CA is named with the CA-file keys.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

mod problem;

pub use problem::CertificateProblem;

/// Largest PEM file read: a CA bundle of every public root is about 250 KiB.
pub const PEM_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Why a TLS file cannot be used: which key named it, which file, what is wrong.
#[derive(Debug)]
pub struct TlsError {
    /// The config key that names the file, e.g. `database.sslrootcert`.
    pub key: &'static str,
    pub path: PathBuf,
    pub problem: TlsProblem,
}

/// What is wrong with a TLS file.
#[derive(Debug)]
pub enum TlsProblem {
    /// Missing, unreadable, not a regular file, too large.
    Read(io::Error),
    /// The PEM text itself is broken (no END line, bad base64, ...).
    BadPem(String),
    NoCertificate,
    /// A certificate of the file that rustls cannot use as a trust anchor.
    BadCertificate {
        index: usize,
        reason: String,
    },
    NoPrivateKey,
    /// An encrypted PKCS#8 key: there is no passphrase to open it with.
    EncryptedKey,
    /// The key is not one rustls can sign with (an unsupported algorithm or curve).
    UnusableKey(String),
    /// The key is not the one of the certificate named by `cert_key`.
    KeyMismatch {
        cert_key: &'static str,
        cert_path: PathBuf,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, path) = (self.key, self.path.display());
        match &self.problem {
            TlsProblem::Read(e) => write!(f, "{key}: cannot read {path}: {e}"),
            TlsProblem::BadPem(what) => write!(f, "{key}: {path}: not a valid PEM file: {what}"),
            TlsProblem::NoCertificate => {
                write!(f, "{key}: {path}: no certificate in the PEM file")
            }
            TlsProblem::BadCertificate { index, reason } => write!(
                f,
                "{key}: {path}: certificate {} of the file cannot be used: {reason}",
                index + 1
            ),
            TlsProblem::NoPrivateKey => write!(
                f,
                "{key}: {path}: no private key in the PEM file (expected PKCS#8, PKCS#1/RSA or \
                 SEC1/EC)"
            ),
            TlsProblem::EncryptedKey => write!(
                f,
                "{key}: {path}: the private key is encrypted; give an unencrypted key (e.g. \
                 openssl pkey -in KEY -out KEY.plain) and protect the file with its permissions"
            ),
            TlsProblem::UnusableKey(reason) => {
                write!(f, "{key}: {path}: the private key cannot be used: {reason}")
            }
            TlsProblem::KeyMismatch {
                cert_key,
                cert_path,
            } => write!(
                f,
                "{key}: {path}: the key does not match the certificate in {cert_key} ({})",
                cert_path.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsError {
    fn new(key: &'static str, path: &Path, problem: TlsProblem) -> TlsError {
        TlsError {
            key,
            path: path.to_owned(),
            problem,
        }
    }
}

/// The crypto provider of every TLS connection and check in the system: rustls's `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in file order; other sections (keys, CRLs) are skipped.
/// No certificate at all is an error.
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_pem(key, path)?;
    let mut certs = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&text) {
        let (kind, der) = section.map_err(|e| TlsError::new(key, path, bad_pem(&e)))?;
        if kind == SectionKind::Certificate {
            certs.push(CertificateDer::from(der));
        }
    }
    if certs.is_empty() {
        return Err(TlsError::new(key, path, TlsProblem::NoCertificate));
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA
/// PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
pub fn read_private_key(
    key: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_pem(key, path)?;
    if text
        .windows(b"BEGIN ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY")
    {
        return Err(TlsError::new(key, path, TlsProblem::EncryptedKey));
    }
    match PrivateKeyDer::from_pem_slice(&text) {
        Ok(der) => Ok(der),
        Err(pem::Error::NoItemsFound) => Err(TlsError::new(key, path, TlsProblem::NoPrivateKey)),
        Err(e) => Err(TlsError::new(key, path, bad_pem(&e))),
    }
}

/// A certificate chain with its private key, checked to belong together: what a TLS server
/// presents, or a client with a client certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The end-entity certificate first, then the intermediates of the file.
    pub certs: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// Reads the certificate file (named by `cert_key`) and the key file (named by `key_key`)
    /// and checks that the key is the certificate's: a mismatch would only show at the first
    /// handshake, as an error on the other side.
    pub fn load(
        cert_key: &'static str,
        cert_path: &Path,
        key_key: &'static str,
        key_path: &Path,
    ) -> Result<Identity, TlsError> {
        let certs = read_certificates(cert_key, cert_path)?;
        let key = read_private_key(key_key, key_path)?;
        let signing_key = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| {
                TlsError::new(key_key, key_path, TlsProblem::UnusableKey(e.to_string()))
            })?;
        let mismatch = || {
            TlsError::new(
                key_key,
                key_path,
                TlsProblem::KeyMismatch {
                    cert_key,
                    cert_path: cert_path.to_owned(),
                },
            )
        };
        match CertifiedKey::new(certs.clone(), signing_key).keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(mismatch())
            }
            // The key cannot say its public half (ring always can): nothing to compare.
            Err(rustls::Error::InconsistentKeys(_)) => {}
            Err(e) => {
                return Err(TlsError::new(
                    cert_key,
                    cert_path,
                    TlsProblem::BadCertificate {
                        index: 0,
                        reason: e.to_string(),
                    },
                ))
            }
        }
        Ok(Identity {
            certs,
            key: Arc::new(key),
        })
    }

    /// The key, for a rustls config builder (which takes it by value).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// The CA certificates of a PEM file, each checked to be usable as a trust anchor.
pub fn read_ca_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = read_certificates(key, path)?;
    let mut check = RootCertStore::empty();
    for (index, cert) in certs.iter().enumerate() {
        check.add(cert.clone()).map_err(|e| {
            TlsError::new(
                key,
                path,
                TlsProblem::BadCertificate {
                    index,
                    reason: format!("not a CA certificate rustls can use ({e})"),
                },
            )
        })?;
    }
    Ok(certs)
}

/// A root store of the CA certificates in a PEM file ([`read_ca_certificates`]).
pub fn read_root_store(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (_added, ignored) = store.add_parsable_certificates(read_ca_certificates(key, path)?);
    debug_assert_eq!(ignored, 0, "read_ca_certificates checked them");
    Ok(store)
}

/// What to log when a handshake failed on the peer's certificate: that it failed verification
/// and why, in words ([`CertificateProblem`]); `None` for any other TLS error.
pub fn verification_failure(error: &rustls::Error) -> Option<String> {
    let problem = CertificateProblem::of(error)?;
    let rustls::Error::InvalidCertificate(detail) = error else {
        return None;
    };
    // rustls' own text beside ours: the variant's name, or the names and times it carries.
    let why = match problem {
        CertificateProblem::Other => detail.to_string(),
        kind => format!("{} ({detail})", kind.what()),
    };
    Some(format!("the certificate failed verification: {why}"))
}

/// [`verification_failure`] for a rustls error carried in an `io::Error` (as TLS streams report
/// a failed handshake).
pub fn io_verification_failure(error: &io::Error) -> Option<String> {
    let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    verification_failure(inner)
}

/// The public roots bundled into the binary (Mozilla's, through `webpki-roots`): what clients
/// trust when no CA file is configured.
pub fn bundled_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The roots a client trusts: the CA file named by `key` when it is set, else [`bundled_roots`].
pub fn root_store(key: &'static str, path: Option<&Path>) -> Result<RootCertStore, TlsError> {
    match path {
        Some(path) => read_root_store(key, path),
        None => Ok(bundled_roots()),
    }
}

/// The text of a PEM file named by the config key `key`: a regular file of at most
/// [`PEM_MAX_BYTES`]. Every reader above starts here; a TLS library that takes PEM text
/// itself (ureq's client key) is given it from here too.
pub fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::file::read_limited(path, PEM_MAX_BYTES)
        .map_err(|e| TlsError::new(key, path, TlsProblem::Read(e)))
}

/// Says what is wrong with the PEM text without quoting it (a key file is a secret).
fn bad_pem(error: &pem::Error) -> TlsProblem {
    let what = match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        pem::Error::Base64Decode(_) => "invalid base64 in a section",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable PEM",
    };
    TlsProblem::BadPem(what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in a directory of its own, removed with the value.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn temp_file(name: &str, contents: &[u8]) -> TempFile {
        let dir = std::env::temp_dir().join(format!("common-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let err = read_certificates("database.sslrootcert", Path::new("/nonexistent/ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("database.sslrootcert: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_certificates_says_so() {
        let file = temp_file("empty.pem", b"just text, no PEM sections\n");
        let err = read_certificates("propagator.tls_ca_file", &file.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("propagator.tls_ca_file"), "{err}");
        assert!(err.contains("no certificate in the PEM file"), "{err}");
    }

    #[test]
    fn broken_pem_is_refused_without_quoting_the_file() {
        let file = temp_file(
            "broken.pem",
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n",
        );
        let err = read_private_key("propagator.tls_client_key_file", &file.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid PEM file"), "{err}");
        assert!(
            !err.contains("c2VjcmV0"),
            "the key's text must not show: {err}"
        );
    }

    #[test]
    fn an_encrypted_key_is_refused_with_what_to_do() {
        let file = temp_file(
            "encrypted.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = read_private_key("consumer.tls_key_file", &file.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("encrypted"), "{err}");
    }

    #[test]
    fn without_a_ca_file_the_bundled_roots_are_trusted() {
        let store = root_store("database.sslrootcert", None).unwrap();
        assert!(store.len() > 100, "{} roots", store.len());
    }

    #[test]
    fn a_failed_verification_is_said_in_words_with_rustls_own_text_beside() {
        use rustls::CertificateError as E;
        let said = |e: E| verification_failure(&rustls::Error::InvalidCertificate(e)).unwrap();
        assert_eq!(
            said(E::UnknownIssuer),
            "the certificate failed verification: it is not signed by a trusted CA (UnknownIssuer)"
        );
        let v1 = E::Other(rustls::OtherError(Arc::new(
            webpki::Error::UnsupportedCertVersion,
        )));
        assert!(said(v1)
            .starts_with("the certificate failed verification: it is an X.509 v1 certificate ("),);
        assert_eq!(
            verification_failure(&rustls::Error::NoCertificatesPresented),
            None
        );
    }
}
