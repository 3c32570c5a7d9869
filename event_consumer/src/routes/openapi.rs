//! The API as OpenAPI 3.1 (`openapi.yaml` at the repository root), built into the binary, and
//! the tests that hold it to the code: to the router, to [`Route::ALL`] and to
//! [`Status::ALL`].
//!
//! [`Route::ALL`]: crate::http::Route::ALL
//! [`Status::ALL`]: crate::http::Status::ALL

/// Served at `GET /openapi.yaml` so a client can fetch the contract of the very binary it talks
/// to; it costs the binary its size, about 20 KB.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

/// [`OPENAPI_YAML`] parsed, for the tests that hold it to the code.
#[cfg(test)]
fn openapi_document() -> serde_norway::Value {
    serde_norway::from_str(OPENAPI_YAML).expect("openapi.yaml is valid YAML")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::http::{Method, Route, Status};
    use crate::routes::router::tests::{request, status_of, GOOD, RULES};
    use crate::routes::{route, Action};

    /// The methods OpenAPI can name, in the order `Allow` lists them.
    const OPENAPI_METHODS: [&str; 8] = [
        "get", "head", "post", "put", "delete", "options", "patch", "trace",
    ];

    #[test]
    fn each_documented_path_takes_exactly_the_documented_methods() {
        let document = openapi_document();
        let paths = document["paths"]
            .as_mapping()
            .expect("openapi.yaml has paths");
        assert!(!paths.is_empty(), "openapi.yaml lists no path");
        for (path, item) in paths {
            let path = path.as_str().expect("a path is a string");
            let documented: Vec<&str> = OPENAPI_METHODS
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .collect();
            assert!(!documented.is_empty(), "{path}: no method documented");
            for name in &documented {
                let Some(method) = method_named(name) else {
                    panic!("{path}: the document lists {name}, which the router cannot tell from any other method");
                };
                let status = status_of(route(&mut request(method, path, GOOD), None, &RULES));
                assert!(
                    ![404, 405].contains(&status),
                    "{path}: the document lists {name}, the router answers {status}"
                );
            }
            let allow = documented
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", ");
            let undocumented = [Method::Get, Method::Head, Method::Post, Method::Other]
                .into_iter()
                .filter(|m| !documented.iter().any(|d| method_named(d) == Some(*m)));
            for method in undocumented {
                let Action::Respond(response) =
                    route(&mut request(method, path, GOOD), None, &RULES)
                else {
                    panic!("{path}: {method:?} is not documented, yet the router takes it");
                };
                assert_eq!(
                    response.status,
                    Status::MethodNotAllowed,
                    "{path}: {method:?}"
                );
                assert!(
                    response
                        .headers
                        .iter()
                        .any(|(k, v)| *k == "Allow" && *v == allow),
                    "{path}: {method:?} must name Allow: {allow}, got {:?}",
                    response.headers
                );
            }
        }
    }

    fn method_named(name: &str) -> Option<Method> {
        match name {
            "get" => Some(Method::Get),
            "head" => Some(Method::Head),
            "post" => Some(Method::Post),
            _ => None,
        }
    }

    #[test]
    fn the_openapi_document_is_served_as_yaml() {
        let Action::Respond(response) =
            route(&mut request(Method::Get, "/openapi.yaml", ""), None, &RULES)
        else {
            panic!("expected a response")
        };
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.content_type, "application/yaml");
        assert_eq!(response.body, OPENAPI_YAML.as_bytes());
        assert_eq!(openapi_document()["openapi"].as_str(), Some("3.1.0"));
        assert_eq!(
            Route::of("/openapi.yaml"),
            Route::OpenApi,
            "its own metrics label"
        );
    }

    #[test]
    fn every_route_is_in_the_openapi_document_with_its_method() {
        let document = openapi_document();
        for route in Route::ALL {
            let (Some(path), Some(method)) = (route.path(), route.method()) else {
                continue;
            };
            let method = OPENAPI_METHODS
                .into_iter()
                .find(|name| method_named(name) == Some(method))
                .expect("a route takes a method OpenAPI names");
            assert!(
                document["paths"][path].get(method).is_some(),
                "{route:?}: {method} {path} is missing from openapi.yaml"
            );
        }
    }

    /// The statuses `openapi.yaml` documents: every operation's responses, and those of
    /// `x-unmatched-requests` (404 and 405, which answer requests that match no operation).
    fn documented_codes() -> BTreeMap<u16, Vec<String>> {
        let document = openapi_document();
        let mut codes: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        let mut add = |responses: &serde_norway::Value, place: String| {
            let responses = responses
                .as_mapping()
                .unwrap_or_else(|| panic!("{place}: responses is not a mapping"));
            for code in responses.keys() {
                let code = code.as_str().and_then(|c| c.parse::<u16>().ok());
                let code = code.unwrap_or_else(|| panic!("{place}: {code:?} is not a status code"));
                codes.entry(code).or_default().push(place.clone());
            }
        };
        let paths = document["paths"]
            .as_mapping()
            .expect("openapi.yaml has paths");
        for (path, item) in paths {
            let item = item.as_mapping().expect("a path item is a mapping");
            for (method, operation) in item {
                let place = format!(
                    "{} {}",
                    method.as_str().unwrap_or("?"),
                    path.as_str().unwrap_or("?")
                );
                add(&operation["responses"], place);
            }
        }
        add(
            &document["x-unmatched-requests"],
            "x-unmatched-requests".into(),
        );
        codes
    }

    #[test]
    fn every_status_the_code_can_send_is_in_the_openapi_document() {
        let documented = documented_codes();
        for status in Status::ALL {
            assert!(
                documented.contains_key(&status.code()),
                "{} {} is missing from openapi.yaml",
                status.code(),
                status.reason()
            );
        }
    }

    #[test]
    fn every_status_in_the_openapi_document_is_one_the_code_can_send() {
        for (code, places) in documented_codes() {
            assert!(
                Status::ALL.iter().any(|s| s.code() == code),
                "openapi.yaml documents {code} at {places:?}, which the consumer never sends"
            );
        }
    }
}
