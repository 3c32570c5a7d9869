//! Why a TLS library refused a peer's certificate, as a kind: told apart by rustls'
//! `CertificateError`, and by webpki's error for the ones rustls passes on as `Other` (an X.509
//! v1 certificate among them), never by message text. Both directions use it: a client saying
//! why the server's certificate failed verification ([`super::verification_failure`]), and the
//! consumer saying why it refused a client certificate (its `https/refusal.rs`, which adds the
//! hints a device's operator needs).

use rustls::CertificateError;

/// A kind of refused certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProblem {
    /// X.509 v1 (no extensions): what `openssl x509 -req` makes without an extensions file.
    Version1,
    /// Not signed by a trusted CA, or the chain to it was not sent.
    UnknownIssuer,
    Expired,
    NotYetValid,
    /// Its extended key usage does not allow this use (server or client authentication).
    WrongPurpose,
    /// Not issued for the host name the client asked for.
    NotValidForName,
    Revoked,
    /// A signature that does not verify, or an algorithm the TLS library does not accept.
    BadSignature,
    /// Not a well-formed certificate.
    BadEncoding,
    /// Any other reason the TLS library gives.
    Other,
}

impl CertificateProblem {
    /// Every kind, in the order of [`CertificateProblem::index`].
    pub const ALL: [CertificateProblem; 10] = [
        CertificateProblem::Version1,
        CertificateProblem::UnknownIssuer,
        CertificateProblem::Expired,
        CertificateProblem::NotYetValid,
        CertificateProblem::WrongPurpose,
        CertificateProblem::NotValidForName,
        CertificateProblem::Revoked,
        CertificateProblem::BadSignature,
        CertificateProblem::BadEncoding,
        CertificateProblem::Other,
    ];

    /// The kind of certificate refusal `error` is, or None when it is not one (no certificate
    /// presented, a protocol error, a peer that went away).
    pub fn of(error: &rustls::Error) -> Option<CertificateProblem> {
        let rustls::Error::InvalidCertificate(error) = error else {
            return None;
        };
        Some(match error {
            CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
                Some(webpki::Error::UnsupportedCertVersion) => CertificateProblem::Version1,
                _ => CertificateProblem::Other,
            },
            CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertificateProblem::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertificateProblem::NotYetValid
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                CertificateProblem::WrongPurpose
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertificateProblem::NotValidForName
            }
            CertificateError::Revoked => CertificateProblem::Revoked,
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                CertificateProblem::BadSignature
            }
            CertificateError::BadEncoding => CertificateProblem::BadEncoding,
            _ => CertificateProblem::Other,
        })
    }

    /// What is wrong with the certificate, in words that fit either direction.
    pub fn what(self) -> &'static str {
        match self {
            CertificateProblem::Version1 => "it is an X.509 v1 certificate",
            CertificateProblem::UnknownIssuer => "it is not signed by a trusted CA",
            CertificateProblem::Expired => "it has expired",
            CertificateProblem::NotYetValid => "it is not valid yet",
            CertificateProblem::WrongPurpose => "its extended key usage does not allow this use",
            CertificateProblem::NotValidForName => "it is not valid for the host name",
            CertificateProblem::Revoked => "it is revoked",
            CertificateProblem::BadSignature => {
                "its signature does not verify or uses an algorithm that is not accepted"
            }
            CertificateProblem::BadEncoding => "it is not a well-formed X.509 certificate",
            CertificateProblem::Other => "the TLS library refused it",
        }
    }

    /// Its place in [`CertificateProblem::ALL`]: a slot per kind (per-kind rate limits).
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn other(error: webpki::Error) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            error,
        ))))
    }

    #[test]
    fn a_version_1_certificate_is_told_apart_by_webpkis_error_not_by_its_text() {
        assert_eq!(
            CertificateProblem::of(&other(webpki::Error::UnsupportedCertVersion)),
            Some(CertificateProblem::Version1)
        );
        assert_eq!(
            CertificateProblem::of(&other(webpki::Error::CaUsedAsEndEntity)),
            Some(CertificateProblem::Other)
        );
    }

    #[test]
    fn errors_that_are_not_a_refused_certificate_are_none() {
        for error in [
            rustls::Error::NoCertificatesPresented,
            rustls::Error::HandshakeNotComplete,
            rustls::Error::General("x".into()),
        ] {
            assert_eq!(CertificateProblem::of(&error), None, "{error}");
        }
    }

    #[test]
    fn every_kind_has_its_own_slot_and_words() {
        for (i, kind) in CertificateProblem::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
            assert!(!kind.what().is_empty());
        }
    }
}
