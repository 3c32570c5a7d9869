//! The rules several keys share, as small types and functions: a number of seconds within
//! bounds, two files set both or neither, a path where empty means unset (`${VAR:-}`), an
//! `http(s)://` URL, a bearer token. Each section's `check` applies them to its fields; a broken
//! rule is an [`Invalid`] naming the key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Secret;

/// A value that parses but cannot work: the key to fix, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub problem: String,
}

impl Invalid {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Invalid {
        Invalid {
            key,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Longest number of seconds any timeout or pause may be: a day is beyond any real wait, and
/// keeps every value far from what a `Duration` cannot hold.
pub const MAX_SECONDS: f64 = 86_400.0;

/// A key holding a number of seconds (YAML gives any float, NaN and infinity included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds {
    pub key: &'static str,
    pub value: f64,
}

impl Seconds {
    pub fn new(key: &'static str, value: f64) -> Seconds {
        Seconds { key, value }
    }

    /// A timeout: above 0 (0 would give up at once) and at most [`MAX_SECONDS`].
    pub fn positive(self) -> Result<(), Invalid> {
        let value = self.value;
        if value.is_finite() && value > 0.0 && value <= MAX_SECONDS {
            return Ok(());
        }
        Err(Invalid::new(
            self.key,
            format!("must be a number of seconds above 0 and at most {MAX_SECONDS}, got {value}"),
        ))
    }

    /// A pause or a grace period, where 0 means none: from 0 to `max`.
    pub fn up_to(self, max: f64) -> Result<(), Invalid> {
        let value = self.value;
        if value.is_finite() && (0.0..=max).contains(&value) {
            return Ok(());
        }
        Err(Invalid::new(
            self.key,
            format!("must be a number of seconds from 0 to {max}, got {value}"),
        ))
    }
}

/// A count or size that must be at least `min`.
pub fn at_least(key: &'static str, value: usize, min: usize) -> Result<(), Invalid> {
    if value >= min {
        return Ok(());
    }
    Err(Invalid::new(key, format!("must be at least {min}")))
}

/// A whole number of things (`what`: "sends", "events") from 1 to `max`.
pub fn count_within(
    key: &'static str,
    value: usize,
    max: usize,
    what: &str,
) -> Result<(), Invalid> {
    if (1..=max).contains(&value) {
        return Ok(());
    }
    Err(Invalid::new(
        key,
        format!("must be a whole number of {what} from 1 to {max}, got {value}"),
    ))
}

/// Two files that only work together, a certificate and its private key: both set or neither.
/// An empty path (an unset `${VAR:-}`) counts as unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePair<'a> {
    cert_key: &'static str,
    cert: Option<&'a Path>,
    key_key: &'static str,
    key: Option<&'a Path>,
}

impl<'a> FilePair<'a> {
    pub fn new(
        cert_key: &'static str,
        cert: &'a Option<PathBuf>,
        key_key: &'static str,
        key: &'a Option<PathBuf>,
    ) -> FilePair<'a> {
        FilePair {
            cert_key,
            cert: non_empty(cert),
            key_key,
            key: non_empty(key),
        }
    }

    /// Refuses one file without the other, naming both keys.
    pub fn check(&self) -> Result<(), Invalid> {
        let (set, unset) = match (self.cert, self.key) {
            (Some(_), None) => (self.cert_key, self.key_key),
            (None, Some(_)) => (self.key_key, self.cert_key),
            _ => return Ok(()),
        };
        Err(Invalid::new(
            set,
            format!("is set but {unset} is not: set both or neither"),
        ))
    }

    /// The certificate and key files when both are set.
    pub fn files(&self) -> Option<(&'a Path, &'a Path)> {
        Some((self.cert?, self.key?))
    }
}

/// An optional path, with an empty one (an unset `${VAR:-}`) taken as absent.
pub fn non_empty(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// A URL the propagator sends to: `http://` or `https://`.
pub fn http_url(key: &'static str, url: &str) -> Result<(), Invalid> {
    if is_http_url(url) {
        return Ok(());
    }
    Err(Invalid::new(
        key,
        format!("must be an http:// or https:// URL, got `{url}`"),
    ))
}

/// A bearer token goes into a header as it is: printable ASCII without spaces.
pub fn bearer_token(key: &'static str, token: &Option<Secret>) -> Result<(), Invalid> {
    match token {
        Some(token) if !token.expose().bytes().all(|b| b.is_ascii_graphic()) => {
            Err(Invalid::new(key, "must be printable ASCII without spaces"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_must_be_above_zero_finite_and_at_most_a_day() {
        for value in [0.0, -1.0, f64::NAN, f64::INFINITY, 86_400.5] {
            let err = Seconds::new("x.timeout_seconds", value)
                .positive()
                .unwrap_err();
            assert_eq!(err.key, "x.timeout_seconds", "{value}");
        }
        for value in [0.001, 1.0, 86_400.0] {
            assert_eq!(Seconds::new("k", value).positive(), Ok(()), "{value}");
        }
    }

    #[test]
    fn a_pause_may_be_zero_up_to_its_bound() {
        assert_eq!(Seconds::new("k", 0.0).up_to(10.0), Ok(()));
        assert_eq!(Seconds::new("k", 10.0).up_to(10.0), Ok(()));
        let err = Seconds::new("k", 10.5).up_to(10.0).unwrap_err();
        assert_eq!(
            err.problem,
            "must be a number of seconds from 0 to 10, got 10.5"
        );
        assert!(Seconds::new("k", f64::NAN).up_to(10.0).is_err(), "NaN");
    }

    #[test]
    fn a_file_pair_is_both_or_neither_and_empty_counts_as_unset() {
        let (some, none, empty) = (Some(PathBuf::from("c.pem")), None, Some(PathBuf::from("")));
        let pair = FilePair::new("a.cert", &some, "a.key", &none);
        let err = pair.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.cert: is set but a.key is not: set both or neither"
        );
        let pair = FilePair::new("a.cert", &empty, "a.key", &some);
        assert_eq!(pair.check().unwrap_err().key, "a.key");
        assert_eq!(pair.files(), None);
        let pair = FilePair::new("a.cert", &empty, "a.key", &none);
        assert_eq!((pair.check(), pair.files()), (Ok(()), None));
        let pair = FilePair::new("a.cert", &some, "a.key", &some);
        assert_eq!(pair.files(), Some((Path::new("c.pem"), Path::new("c.pem"))));
    }
}
