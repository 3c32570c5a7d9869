//! Test certificates: a CA of our own and certificates it signs, written as PEM files into a
//! temporary directory that is removed with the [`Pki`]. For the TLS tests of the database
//! connection, the propagator and the consumer's HTTPS side.
//!
//! ```no_run
//! let pki = test_support::Pki::new();
//! let server = pki.server_cert("db", &["localhost", "127.0.0.1"]);
//! let client = pki.client_cert("propagator", "event_propagator");
//! let stranger = test_support::Pki::new(); // an unrelated CA
//! # let _ = (server, client, stranger);
//! ```
//!
//! Keys are ECDSA P-256 in PKCS#8 (`BEGIN PRIVATE KEY`), rcgen's default. Names that parse as
//! IP addresses become IP subject alternative names, the others DNS names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority and the directory its files go to.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// A new CA (`ca.pem`) in a new temporary directory. Each call makes an unrelated CA.
    pub fn new() -> Pki {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("evtest-pki-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("event system test CA {n}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("rcgen generates a key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("rcgen signs the CA");
        let ca_file = dir.join("ca.pem");
        write(&ca_file, &ca.pem());
        Pki { dir, ca, ca_file }
    }

    /// The CA certificate (PEM): what clients trust, or what a server checks client
    /// certificates against.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server certificate for `hosts` (e.g. `localhost`, `127.0.0.1`), signed by this CA,
    /// as `<file_stem>.pem` and `<file_stem>.key`.
    pub fn server_cert(&self, file_stem: &str, hosts: &[&str]) -> CertFiles {
        let mut params = leaf(hosts, hosts.first().copied().unwrap_or(file_stem));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file_stem, params)
    }

    /// A client certificate with subject `common_name`, signed by this CA.
    pub fn client_cert(&self, file_stem: &str, common_name: &str) -> CertFiles {
        let mut params = leaf(&[], common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file_stem, params)
    }

    /// A client certificate signed by this CA that expired in 2001.
    pub fn expired_client_cert(&self, file_stem: &str, common_name: &str) -> CertFiles {
        let mut params = leaf(&[], common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.issue(file_stem, params)
    }

    /// A server certificate for `hosts` signed by this CA that expired in 2001.
    pub fn expired_server_cert(&self, file_stem: &str, hosts: &[&str]) -> CertFiles {
        let mut params = leaf(hosts, hosts.first().copied().unwrap_or(file_stem));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.issue(file_stem, params)
    }

    fn issue(&self, file_stem: &str, params: CertificateParams) -> CertFiles {
        let key = KeyPair::generate().expect("rcgen generates a key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("rcgen signs the certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}.key")),
        };
        write(&files.cert, &cert.pem());
        write(&files.key, &key.serialize_pem());
        files
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn leaf(hosts: &[&str], common_name: &str) -> CertificateParams {
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("valid subject alternative names");
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_and_keys_are_written_as_pem_and_removed_with_the_pki() {
        let pki = Pki::new();
        let server = pki.server_cert("server", &["localhost", "127.0.0.1"]);
        let client = pki.client_cert("client", "tester");
        for path in [pki.ca_file(), &server.cert, &client.cert] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(
                text.starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                path.display()
            );
        }
        let key = std::fs::read_to_string(&server.key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let dir = pki.dir().to_owned();
        drop(pki);
        assert!(!dir.exists());
    }
}
