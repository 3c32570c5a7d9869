//! What the log says about the server's certificate: its subject and when it expires, read
//! from the certificate, and the line written at start and at each reload (a warning within
//! [`EXPIRY_WARNING`] of the expiry).
//!
//! A short DER walk down to `tbsCertificate.validity` and `subject` (RFC 5280 §4.1) rather
//! than an X.509 crate: those parse every extension and pull in a parser framework, for two
//! fields read once at start and at each reload. Anything unexpected is an error, never a panic.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::calendar::days_from_civil;
use common::config::ServerTlsFiles;

/// Under this much validity left, start and reload log a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Subject and expiry of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Its attributes in order, `O=Example, CN=events.example.org`.
    pub subject: String,
    pub not_after: SystemTime,
}

impl CertSummary {
    /// Time left until it expires (zero once it has).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }
}

/// The certificate could not be read as X.509 DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotACertificate(&'static str);

impl fmt::Display for NotACertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an X.509 certificate: {}", self.0)
    }
}

impl std::error::Error for NotACertificate {}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`, present from X.509 v2 on.
const VERSION_TAG: u8 = 0xa0;

/// Reads the subject and `notAfter` of a DER certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, NotACertificate> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (tbs, _) = element(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION_TAG) {
        rest = any(rest)?.1;
    }
    let rest = any(rest)?.1; // serialNumber
    let rest = any(rest)?.1; // signature algorithm
    let rest = any(rest)?.1; // issuer
    let (validity, rest) = element(rest, SEQUENCE)?;
    let (subject, _) = element(rest, SEQUENCE)?;
    let (_, after_not_before) = any(validity)?;
    let (tag, value, _) = tlv(after_not_before)?;
    let not_after = time(tag, value)?;
    Ok(CertSummary {
        subject: name(subject)?,
        not_after,
    })
}

/// One TLV: its tag, its value and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), NotACertificate> {
    let truncated = NotACertificate("truncated");
    let (&tag, rest) = input.split_first().ok_or(truncated.clone())?;
    let (&first, rest) = rest.split_first().ok_or(truncated.clone())?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(NotACertificate("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(truncated);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn element(input: &[u8], expected: u8) -> Result<(&[u8], &[u8]), NotACertificate> {
    match tlv(input)? {
        (tag, value, rest) if tag == expected => Ok((value, rest)),
        _ => Err(NotACertificate("unexpected structure")),
    }
}

fn any(input: &[u8]) -> Result<(&[u8], &[u8]), NotACertificate> {
    tlv(input).map(|(_, value, rest)| (value, rest))
}

/// A Name: SEQUENCE OF SET OF { type OID, value string }, as `KEY=value, …`.
fn name(mut rdns: &[u8]) -> Result<String, NotACertificate> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (set, rest) = element(rdns, SET)?;
        rdns = rest;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (attribute, rest) = element(attributes, SEQUENCE)?;
            attributes = rest;
            let (oid, value) = element(attribute, OID)?;
            let (_, text, _) = tlv(value)?;
            let text = String::from_utf8_lossy(text);
            parts.push(format!("{}={text}", attribute_name(oid)));
        }
    }
    Ok(parts.join(", "))
}

fn attribute_name(oid: &[u8]) -> String {
    // 2.5.4.x, encoded 55 04 x.
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        other => other
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950 to 2049, RFC 5280) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`.
fn time(tag: u8, value: &[u8]) -> Result<SystemTime, NotACertificate> {
    let bad = NotACertificate("bad validity time");
    let text = std::str::from_utf8(value).map_err(|_| bad.clone())?;
    let digits = text.strip_suffix('Z').ok_or(bad.clone())?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let number = |s: &str| s.parse::<i64>().map_err(|_| bad.clone());
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = number(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (number(&digits[..4])?, &digits[4..]),
        _ => return Err(bad),
    };
    let field = |i: usize| number(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad);
    }
    // Month and day were checked to be small and positive just above.
    let days = days_from_civil(year, month as u32, day as u32);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(60);
    u64::try_from(seconds)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| NotACertificate("expires before 1970"))
}

/// Logs what the configuration just built serves: `what` says whether at start or at a reload.
pub(super) fn log_certificate(what: &str, summary: Option<&CertSummary>, files: &ServerTlsFiles) {
    let mutual = files.client_ca.is_some();
    let (level, line) = certificate_line(what, summary, &files.cert, mutual, SystemTime::now());
    log::log!(level, "{line}");
}

/// The certificate's line and its level: a warning when it expires within [`EXPIRY_WARNING`].
/// Without a summary (a certificate the DER walk could not read) only the file is named.
fn certificate_line(
    what: &str,
    summary: Option<&CertSummary>,
    cert: &Path,
    mutual: bool,
    now: SystemTime,
) -> (log::Level, String) {
    let mutual = if mutual {
        ", client certificates required"
    } else {
        ""
    };
    let Some(summary) = summary else {
        return (
            log::Level::Info,
            format!("{what} {}{mutual}", cert.display()),
        );
    };
    let expires = humantime::format_rfc3339_seconds(summary.not_after);
    let left = summary.remaining(now);
    let days = match left.as_secs() / 86_400 {
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    };
    let (subject, cert) = (&summary.subject, cert.display());
    if left < EXPIRY_WARNING {
        let line = format!("{what} {subject} ({cert}), which expires {expires}: in {days}{mutual}");
        (log::Level::Warn, line)
    } else {
        let line = format!("{what} {subject} ({cert}), expires {expires} (in {days}){mutual}");
        (log::Level::Info, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(hex: &str) -> Vec<u8> {
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `openssl req -x509 -newkey ec … -days 3650 -subj "/O=Example/CN=events.example.org"`;
    /// `openssl x509 -noout -enddate` says `notAfter=Nov 29 01:38:37 2036 GMT`.
    const EXAMPLE: &str = "
        308201b230820159a00302010202146506c92e730401b86834f1993a1fe6a49a9cfc4b300a06082a8648ce3d04030230
        2f3110300e060355040a0c074578616d706c65311b301906035504030c126576656e74732e6578616d706c652e6f7267
        301e170d3236313230323031333833375a170d3336313132393031333833375a302f3110300e060355040a0c07457861
        6d706c65311b301906035504030c126576656e74732e6578616d706c652e6f72673059301306072a8648ce3d02010608
        2a8648ce3d030107034200044fbd2842124d672c854e7602cd246791b43b5c6d48c51c589dc145cbf5b0ba412635de53
        725c28143a034e71fb7c5de6654af961bc5090c4c5feea6dc185bf27a3533051301d0603551d0e041604140c0d0bd0dd
        6d2472ddad9497fc5051df4d87c216301f0603551d230418301680140c0d0bd0dd6d2472ddad9497fc5051df4d87c216
        300f0603551d130101ff040530030101ff300a06082a8648ce3d04030203470030440220272451d0eeec6b921515a822
        40e748cc9359be8c91dba38c8cb6d042c06c678502201282909d4c9d2f02104a541b496bcce7eccfcaf0fcd550ddad39
        ec34849d3632";

    /// A one-day certificate with a 17-byte serial and no CN: `notAfter=Dec 3 01:38:37 2026 GMT`.
    const NO_CN: &str = "
        3082016e30820116a003020102021100ff112233445566778899aabbccddeeff300a06082a8648ce3d040302300f310d
        300b060355040a0c044e6f434e301e170d3236313230323031333833375a170d3236313230333031333833375a300f31
        0d300b060355040a0c044e6f434e3059301306072a8648ce3d020106082a8648ce3d03010703420004b658cc7002a5f3
        8b064a718f24c942f4d056faa4e5f8595e647e21f52e9f759c948eaf1f6dfc89b6d173389934015958ba7e1cdc8bfaa8
        2df346c2fed8236a73a3533051301d0603551d0e041604145666b1ca39e587daa4676e6897302749e0e768b6301f0603
        551d230418301680145666b1ca39e587daa4676e6897302749e0e768b6300f0603551d130101ff040530030101ff300a
        06082a8648ce3d04030203460030430220657accb573455cf0d98f51859cf9464fa1b3a3c88790470e90bc6ce4bda246
        9e021f537222abd3759b721f38fb354a6a6de5110399ff41b6113431ee3bbe2e4123";

    #[test]
    fn reads_the_subject_and_expiry_openssl_shows() {
        let summary = summarize(&unhex(EXAMPLE)).unwrap();
        assert_eq!(summary.subject, "O=Example, CN=events.example.org");
        // date -u -d '2036-11-29 01:38:37' +%s
        assert_eq!(
            summary.not_after,
            UNIX_EPOCH + Duration::from_secs(2_111_535_517)
        );
        let summary = summarize(&unhex(NO_CN)).unwrap();
        assert_eq!(summary.subject, "O=NoCN");
        assert_eq!(
            summary.not_after,
            UNIX_EPOCH + Duration::from_secs(1_796_261_917)
        );
    }

    #[test]
    fn anything_that_is_not_a_certificate_is_an_error_at_every_cut() {
        let der = unhex(EXAMPLE);
        assert!(summarize(&[]).is_err());
        assert!(summarize(b"-----BEGIN CERTIFICATE-----").is_err());
        for cut in 0..300.min(der.len()) {
            assert!(summarize(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = summarize(&flipped);
            flipped[i] ^= 0xff;
        }
    }

    #[test]
    fn both_time_forms_and_the_utc_century_rule() {
        let at = |tag, s: &str| time(tag, s.as_bytes()).unwrap();
        assert_eq!(at(UTC_TIME, "700101000000Z"), UNIX_EPOCH);
        assert_eq!(
            at(UTC_TIME, "491231235959Z"),
            at(GENERALIZED_TIME, "20491231235959Z")
        );
        assert_eq!(
            at(GENERALIZED_TIME, "20000301000000Z"),
            UNIX_EPOCH + Duration::from_secs(951_868_800)
        );
        assert!(time(UTC_TIME, b"7001010000Z").is_err());
        assert!(time(UTC_TIME, b"700101000000+0100").is_err());
        assert!(time(GENERALIZED_TIME, b"20001301000000Z").is_err());
    }

    #[test]
    fn the_line_warns_within_fourteen_days_of_the_expiry() {
        let summary = CertSummary {
            subject: "CN=events.example.org".into(),
            not_after: UNIX_EPOCH + Duration::from_secs(2_111_535_517),
        };
        let cert = Path::new("/etc/events/cert.pem");
        let days_before = |days: u64| summary.not_after - Duration::from_secs(days * 86_400);
        let (level, line) = certificate_line(
            "serving HTTPS with",
            Some(&summary),
            cert,
            false,
            days_before(30),
        );
        assert_eq!(level, log::Level::Info);
        assert_eq!(
            line,
            "serving HTTPS with CN=events.example.org (/etc/events/cert.pem), expires \
             2036-11-29T01:38:37Z (in 30 days)"
        );
        let (level, line) =
            certificate_line("reloaded:", Some(&summary), cert, true, days_before(1));
        assert_eq!(level, log::Level::Warn);
        assert_eq!(
            line,
            "reloaded: CN=events.example.org (/etc/events/cert.pem), which expires \
             2036-11-29T01:38:37Z: in 1 day, client certificates required"
        );
        let (level, line) = certificate_line("serving HTTPS with", None, cert, false, UNIX_EPOCH);
        assert_eq!(
            (level, line.as_str()),
            (log::Level::Info, "serving HTTPS with /etc/events/cert.pem"),
            "a certificate the walk cannot read is named by its file"
        );
    }
}
