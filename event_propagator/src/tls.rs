//! TLS for `https://` endpoints: which CAs to trust and which client certificate to present,
//! as ureq's [`TlsConfig`] (rustls with the ring provider, like every TLS side of the system).
//!
//! Without `tls_ca_file` the public roots bundled into ureq are trusted (`webpki-roots`, the
//! same list as `common::tls::bundled_roots`), not the system's `/etc/ssl/certs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::tls::{read_ca_certificates, read_pem, Identity, TlsError, TlsProblem};
use rustls::pki_types::CertificateDer;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// The TLS files of a run (from `propagator.tls_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates trusted instead of the bundled roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate file and its key file.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Reads and checks the files (see `common::tls`) into the agent's TLS configuration.
    pub fn load(&self) -> Result<TlsConfig, TlsError> {
        let mut builder = TlsConfig::builder();
        if let Some(ca_file) = &self.ca_file {
            let certs = read_ca_certificates("propagator.tls_ca_file", ca_file)?;
            builder = builder.root_certs(RootCerts::Specific(Arc::new(for_ureq(&certs))));
        }
        if let Some((cert_file, key_file)) = &self.client_identity {
            builder = builder.client_cert(Some(client_cert(cert_file, key_file)?));
        }
        Ok(builder.build())
    }
}

fn client_cert(cert_file: &Path, key_file: &Path) -> Result<ClientCert, TlsError> {
    let identity = Identity::load(
        "propagator.tls_client_cert_file",
        cert_file,
        "propagator.tls_client_key_file",
        key_file,
    )?;
    // ureq takes the key only as PEM (its key-kind type is not public): the file once more,
    // now that it is known to hold a good key.
    let key_key = "propagator.tls_client_key_file";
    let pem = read_pem(key_key, key_file)?;
    let key = PrivateKey::from_pem(&pem).map_err(|_| TlsError {
        key: key_key,
        path: key_file.to_owned(),
        problem: TlsProblem::NoPrivateKey,
    })?;
    Ok(ClientCert::new_with_certs(&for_ureq(&identity.certs), key))
}

/// rustls's certificates as ureq's type (the same DER, copied).
fn for_ureq(certs: &[CertificateDer<'static>]) -> Vec<Certificate<'static>> {
    certs
        .iter()
        .map(|c| Certificate::from_der(c).to_owned())
        .collect()
}
