//! A client certificate the TLS library refused, said so at the default log level: an
//! operator who sees devices fail to connect finds one line per kind of refusal naming the
//! reason and what to do about it. The kinds are common's [`CertificateProblem`], the one
//! classifier of refused certificates (the propagator's and the database client's messages use
//! it too); the hints for a device's operator are here.
//!
//! The first refusal of each kind is logged at warn level at once, later ones of that kind at
//! most once a minute with a count ([`RateLimited`]): a device retrying every second with a
//! bad certificate cannot flood the journal. Every failed handshake is still logged at debug
//! level and counted in `event_consumer_tls_handshake_failures_total`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::logging::RateLimited;
use common::sync::lock;
use common::tls::CertificateProblem;

/// How many kinds there are, for the per-kind rate limits.
const KINDS: usize = CertificateProblem::ALL.len();

/// Later refusals of one kind: at most one line a minute, with a count of those left out.
const INTERVAL: Duration = Duration::from_secs(60);

/// What is wrong with a client certificate, and what to do about it (None: the TLS library's
/// own words, logged beside, are all there is).
pub fn reason_and_hint(kind: CertificateProblem) -> (&'static str, Option<&'static str>) {
    match kind {
        CertificateProblem::Version1 => (
            kind.what(),
            Some(
                "X.509 v1 certificates are not accepted; sign with an extensions file \
                 (basicConstraints, keyUsage, extendedKeyUsage = clientAuth), e.g. \
                 openssl x509 -req ... -extfile client.ext",
            ),
        ),
        CertificateProblem::UnknownIssuer => (
            "it is not signed by a CA of consumer.tls_client_ca_file",
            Some(
                "sign it with that CA, or add its CA to the file; a client signed by an \
                 intermediate CA must send the intermediate too",
            ),
        ),
        CertificateProblem::Expired => (kind.what(), Some("issue a new one")),
        CertificateProblem::NotYetValid => (
            kind.what(),
            Some("check its notBefore and the clocks of both hosts"),
        ),
        CertificateProblem::WrongPurpose => (
            "its extended key usage does not allow client authentication",
            Some("sign it with extendedKeyUsage = clientAuth"),
        ),
        CertificateProblem::BadSignature => (
            kind.what(),
            Some("sign it again with an ECDSA, Ed25519 or RSA (SHA-256 or better) key"),
        ),
        CertificateProblem::BadEncoding => (kind.what(), Some("check the file the client sends")),
        CertificateProblem::NotValidForName
        | CertificateProblem::Revoked
        | CertificateProblem::Other => (kind.what(), None),
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
        let Some(kind) = CertificateProblem::of(error) else {
            return false;
        };
        let (reason, hint) = reason_and_hint(kind);
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

    use rustls::CertificateError;

    use super::*;

    #[test]
    fn every_kind_has_a_reason_for_a_client_certificate() {
        for kind in CertificateProblem::ALL {
            assert!(!reason_and_hint(kind).0.is_empty(), "{kind:?}");
        }
        assert_eq!(
            reason_and_hint(CertificateProblem::UnknownIssuer).0,
            "it is not signed by a CA of consumer.tls_client_ca_file"
        );
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
        let allowed = |kind: CertificateProblem, at| lock(&log.kinds)[kind.index()].allow(at);
        // The line just written started the interval of its kind only.
        assert_eq!(allowed(CertificateProblem::Version1, start), None);
        assert!(log.record("b", &expired, start));
        assert_eq!(
            allowed(CertificateProblem::Version1, start + INTERVAL),
            Some(1),
            "after the interval, with the count of the one held back"
        );
        assert!(!log.record("c", &rustls::Error::NoCertificatesPresented, start));
    }
}
