//! The endpoints of a run resolved once, at setup: each one checked (a URL ureq can use,
//! none listed twice), with where its batches go (`propagator.batch_endpoint`, else its sibling
//! `events`) and its name for logs (without any `user:password@`).

use crate::settings::Settings;
use crate::SetupError;

/// One endpoint: where its events and batches go, and its name in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub event_url: String,
    /// Where batches are POSTed (`POST /events`): set when batches are sent.
    pub batch_url: Option<String>,
    /// The endpoint as configured, without any `user:password@`.
    pub name: String,
    /// `batch_url` without any `user:password@`.
    pub batch_name: Option<String>,
}

/// Each endpoint checked, with where its batches go when batches are sent, and its name for
/// logs. Several endpoints (from `--endpoint` flags, which the config check did not see) must
/// differ, and take their batch URLs from their own paths.
pub(crate) fn resolve(settings: &Settings) -> Result<Vec<Target>, SetupError> {
    let several = settings.endpoints.len() > 1;
    if settings.endpoints.is_empty() {
        return Err(SetupError::Endpoint {
            endpoint: String::new(),
            problem: "no endpoint: set propagator.endpoint(s) or --endpoint".into(),
        });
    }
    let mut targets: Vec<Target> = Vec::with_capacity(settings.endpoints.len());
    for endpoint in &settings.endpoints {
        check_endpoint(endpoint)?;
        let name = redact_userinfo(endpoint);
        if targets.iter().any(|t| t.name == name) {
            return Err(SetupError::Endpoint {
                endpoint: name,
                problem: "is listed twice".into(),
            });
        }
        let batch_url = match (settings.batch_size, &settings.batch_endpoint) {
            (1, _) => None,
            (_, Some(_)) if several => {
                return Err(SetupError::Endpoint {
                    endpoint: name,
                    problem: "with several endpoints batches go to each one's sibling \
                              `events`: remove propagator.batch_endpoint (or --batch-endpoint)"
                        .into(),
                })
            }
            (_, Some(url)) => Some(url.clone()),
            (_, None) => Some(common::config::sibling_batch_endpoint(endpoint).map_err(
                |problem| SetupError::Endpoint {
                    endpoint: name.clone(),
                    problem,
                },
            )?),
        };
        if let Some(url) = &batch_url {
            check_endpoint(url)?;
        }
        targets.push(Target {
            event_url: endpoint.clone(),
            batch_name: batch_url.as_deref().map(redact_userinfo),
            batch_url,
            name,
        });
    }
    Ok(targets)
}

/// Refuses an endpoint ureq could not use, at start rather than at the first send.
fn check_endpoint(endpoint: &str) -> Result<(), SetupError> {
    let problem = |problem: &str| {
        Err(SetupError::Endpoint {
            endpoint: endpoint.to_owned(),
            problem: problem.to_owned(),
        })
    };
    let uri = match endpoint.parse::<ureq::http::Uri>() {
        Ok(uri) => uri,
        Err(e) => return problem(&format!("not a valid URL: {e}")),
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return problem("must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return problem("has no host");
    }
    Ok(())
}

/// A URL (an endpoint, a redirect's `Location`) without any `user:password@` part, for logging.
pub(crate) fn redact_userinfo(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return endpoint.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_ureq_cannot_use_are_refused_at_start() {
        assert!(check_endpoint("http://127.0.0.1:8080/event").is_ok());
        assert!(check_endpoint("https://consumer.example:8443/event").is_ok());
        for (endpoint, reason) in [
            ("http://", "no host"),
            ("ftp://h/e", "another scheme"),
            ("http://exa mple/e", "a space"),
        ] {
            assert!(check_endpoint(endpoint).is_err(), "{reason}");
        }
    }

    #[test]
    fn credentials_in_the_endpoint_are_not_logged() {
        assert_eq!(
            redact_userinfo("http://u:secret@h:1/e@x"),
            "http://***@h:1/e@x"
        );
        assert_eq!(redact_userinfo("http://h:1/e"), "http://h:1/e");
    }
}
