//! A client certificate the TLS library refused, said so at the default log level: an
//! operator who sees devices fail to connect finds one line per kind of refusal naming the
//! reason and what to do about it. Kinds are told apart by rustls' `CertificateError`, and by
//! webpki's error for the ones rustls passes on as `Other` (an X.509 v1 certificate among
//! them), never by message text.
//!
//! The first refusal of each kind is logged at warn level at once, later ones of that kind at
//! most once a minute with a count ([`RateLimited`]): a device retrying every second with a
//! bad certificate cannot flood the journal. Every failed handshake is still logged at debug
//! level and counted in `event_consumer_tls_handshake_failures_total`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::logging::RateLimited;
use common::sync::lock;
use rustls::CertificateError;

/// A kind of refused client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateRefusal {
    /// X.509 v1 (no extensions): what `openssl x509 -req` makes without an extensions file.
    Version1,
    /// Not signed by a CA of `consumer.tls_client_ca_file`, or the chain to it was not sent.
    UnknownIssuer,
    Expired,
    NotYetValid,
    /// Its extended key usage does not allow client authentication.
    NotForClients,
    /// A signature that does not verify, or an algorithm the TLS library does not accept.
    BadSignature,
    /// Not a well-formed certificate.
    BadEncoding,
    /// Any other reason the TLS library gives.
    Other,
}

/// How many kinds there are, for the per-kind rate limits.
const KINDS: usize = 8;

/// Later refusals of one kind: at most one line a minute, with a count of those left out.
const INTERVAL: Duration = Duration::from_secs(60);

impl CertificateRefusal {
    /// The kind of client-certificate refusal `error` is, or None when it is not one (no
    /// certificate presented, a protocol error, a client that went away).
    pub fn of(error: &rustls::Error) -> Option<CertificateRefusal> {
        let rustls::Error::InvalidCertificate(error) = error else {
            return None;
        };
        Some(match error {
            CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
                Some(webpki::Error::UnsupportedCertVersion) => CertificateRefusal::Version1,
                _ => CertificateRefusal::Other,
            },
            CertificateError::UnknownIssuer => CertificateRefusal::UnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertificateRefusal::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertificateRefusal::NotYetValid
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                CertificateRefusal::NotForClients
            }
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                CertificateRefusal::BadSignature
            }
            CertificateError::BadEncoding => CertificateRefusal::BadEncoding,
            _ => CertificateRefusal::Other,
        })
    }

    /// What is wrong with the certificate, and what to do about it (None: the TLS library's
    /// own words, logged beside, are all there is).
    pub fn reason_and_hint(self) -> (&'static str, Option<&'static str>) {
        match self {
            CertificateRefusal::Version1 => (
                "it is an X.509 v1 certificate",
                Some(
                    "X.509 v1 certificates are not accepted; sign with an extensions file \
                     (basicConstraints, keyUsage, extendedKeyUsage = clientAuth), e.g. \
                     openssl x509 -req ... -extfile client.ext",
                ),
            ),
            CertificateRefusal::UnknownIssuer => (
                "it is not signed by a CA of consumer.tls_client_ca_file",
                Some(
                    "sign it with that CA, or add its CA to the file; a client signed by an \
                     intermediate CA must send the intermediate too",
                ),
            ),
            CertificateRefusal::Expired => ("it has expired", Some("issue a new one")),
            CertificateRefusal::NotYetValid => (
                "it is not valid yet",
                Some("check its notBefore and the clocks of both hosts"),
            ),
            CertificateRefusal::NotForClients => (
                "its extended key usage does not allow client authentication",
                Some("sign it with extendedKeyUsage = clientAuth"),
            ),
            CertificateRefusal::BadSignature => (
                "its signature does not verify or uses an algorithm that is not accepted",
                Some("sign it again with an ECDSA, Ed25519 or RSA (SHA-256 or better) key"),
            ),
            CertificateRefusal::BadEncoding => (
                "it is not a well-formed X.509 certificate",
                Some("check the file the client sends"),
            ),
            CertificateRefusal::Other => ("the TLS library refused it", None),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The per-kind rate limits of the refusal lines.
#[derive(Debug)]
pub struct RefusalLog {
    kinds: Mutex<[RateLimited; KINDS]>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            kinds: Mutex::new(std::array::from_fn(|_| {
                RateLimited::new(log::Level::Warn, INTERVAL, "refusals")
            })),
        }
    }
}

impl RefusalLog {
    /// Logs `error` if it is a refused client certificate (from `peer`) and its kind's limit
    /// lets the line through; true when `error` was such a refusal.
    pub fn record(&self, peer: &str, error: &rustls::Error, now: Instant) -> bool {
        let Some(kind) = CertificateRefusal::of(error) else {
            return false;
        };
        let (reason, hint) = kind.reason_and_hint();
        let hint = hint.map_or_else(String::new, |h| format!("; {h}"));
        lock(&self.kinds)[kind.index()].log(
            now,
            format_args!("client certificate from {peer} refused: {reason} ({error}){hint}"),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_version_1_certificate_is_told_apart_by_webpkis_error_not_by_its_text() {
        let error = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::UnsupportedCertVersion),
        )));
        assert_eq!(
            CertificateRefusal::of(&error),
            Some(CertificateRefusal::Version1)
        );
        let other = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::CaUsedAsEndEntity),
        )));
        assert_eq!(
            CertificateRefusal::of(&other),
            Some(CertificateRefusal::Other)
        );
    }

    #[test]
    fn errors_that_are_not_a_refused_certificate_are_left_to_the_debug_line() {
        for error in [
            rustls::Error::NoCertificatesPresented,
            rustls::Error::HandshakeNotComplete,
            rustls::Error::General("x".into()),
        ] {
            assert_eq!(CertificateRefusal::of(&error), None, "{error}");
        }
    }

    #[test]
    fn every_kind_has_its_own_rate_limit_slot_and_a_reason() {
        let kinds = [
            CertificateRefusal::Version1,
            CertificateRefusal::UnknownIssuer,
            CertificateRefusal::Expired,
            CertificateRefusal::NotYetValid,
            CertificateRefusal::NotForClients,
            CertificateRefusal::BadSignature,
            CertificateRefusal::BadEncoding,
            CertificateRefusal::Other,
        ];
        assert_eq!(kinds.len(), KINDS);
        let mut seen = [false; KINDS];
        for kind in kinds {
            assert!(!seen[kind.index()], "{kind:?} shares a slot");
            seen[kind.index()] = true;
            assert!(!kind.reason_and_hint().0.is_empty());
        }
    }

    #[test]
    fn a_second_refusal_of_a_kind_within_the_interval_is_held_back_another_kind_is_not() {
        let log = RefusalLog::default();
        let start = Instant::now();
        let v1 = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::UnsupportedCertVersion),
        )));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(log.record("a", &v1, start));
        let allowed = |kind: CertificateRefusal, at| lock(&log.kinds)[kind.index()].allow(at);
        // The line just written started the interval of its kind only.
        assert_eq!(allowed(CertificateRefusal::Version1, start), None);
        assert!(log.record("b", &expired, start));
        assert_eq!(
            allowed(CertificateRefusal::Version1, start + INTERVAL),
            Some(1),
            "after the interval, with the count of the one held back"
        );
        assert!(!log.record("c", &rustls::Error::NoCertificatesPresented, start));
    }
}
