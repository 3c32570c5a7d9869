//! The API's routes, listed once. Each [`Route`] owns its path, the method it takes, whether it
//! needs the bearer token, what its body holds and its label in `/metrics`; the router
//! (`crate::routes`), the 401 decided from a head before its body is read, the body limit the
//! framer applies and the metrics all read them from here. Adding a route is a variant and its
//! row in [`Route::spec`]: the compiler then asks the router for its handler, and unit tests
//! hold `openapi.yaml` and `--help` to [`Route::ALL`].
//!
//! It lives beside [`Method`] and [`super::Status`] rather than with the router because the
//! framer needs a route's body limit while it reads the head, before any routing, and because
//! the metrics name routes: neither then depends on the router and what it depends on.

use super::Method;

/// A route of the API, or `Other` for any path that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Event,
    Events,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Other,
}

/// What the body of a request to a route holds, which decides the cap on its decoded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing the route reads (a body sent anyway is read by the HTTP layer and ignored).
    Ignored,
    /// One event, at most `max_body_bytes` decoded.
    Event,
    /// A batch of events, at most `max_batch_bytes` decoded.
    Batch,
}

/// The facts of one route, in one row.
struct Spec {
    /// `None` for [`Route::Other`], which matches every path no route has.
    path: Option<&'static str>,
    /// The one method the route takes (HEAD too wherever it is GET, RFC 9110 section 9.3.2);
    /// `None` for [`Route::Other`] (404 whatever the method).
    method: Option<Method>,
    /// Refused with 401 without `Authorization: Bearer <auth_token>`, when a token is set.
    token: bool,
    body: Body,
}

impl Route {
    /// Every route, in the order of their variants ([`Route::index`] is the position here);
    /// `Other` last. `/metrics` lists the `route` label in this order.
    pub const ALL: [Route; 7] = [
        Route::Event,
        Route::Events,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::OpenApi,
        Route::Other,
    ];

    const fn spec(self) -> Spec {
        const fn row(path: &'static str, method: Method, token: bool, body: Body) -> Spec {
            Spec {
                path: Some(path),
                method: Some(method),
                token,
                body,
            }
        }
        match self {
            Route::Event => row("/event", Method::Post, true, Body::Event),
            Route::Events => row("/events", Method::Post, true, Body::Batch),
            Route::Healthz => row("/healthz", Method::Get, false, Body::Ignored),
            Route::Readyz => row("/readyz", Method::Get, false, Body::Ignored),
            Route::Metrics => row("/metrics", Method::Get, false, Body::Ignored),
            Route::OpenApi => row("/openapi.yaml", Method::Get, false, Body::Ignored),
            Route::Other => Spec {
                path: None,
                method: None,
                token: false,
                body: Body::Ignored,
            },
        }
    }

    /// The route a request path (the target without its query) belongs to.
    pub fn of(path: &str) -> Route {
        Route::ALL
            .into_iter()
            .find(|route| route.path() == Some(path))
            .unwrap_or(Route::Other)
    }

    /// The path, `None` for `Other`.
    pub const fn path(self) -> Option<&'static str> {
        self.spec().path
    }

    /// The method the route takes (HEAD too where this is GET); `None` for `Other`.
    pub const fn method(self) -> Option<Method> {
        self.spec().method
    }

    /// Whether a request with `method` gets past the 405 check (`Other` takes none: 404).
    pub fn allows(self, method: Method) -> bool {
        match self.method() {
            Some(Method::Get) => matches!(method, Method::Get | Method::Head),
            Some(taken) => method == taken,
            None => false,
        }
    }

    /// The `Allow` header of a 405 on this route.
    pub const fn allow(self) -> &'static str {
        match self.method() {
            Some(Method::Get) => "GET, HEAD",
            Some(Method::Post) => "POST",
            // No route takes HEAD alone or an unknown method, and `Other` is a 404, never a 405.
            Some(Method::Head | Method::Other) | None => "",
        }
    }

    pub const fn needs_token(self) -> bool {
        self.spec().token
    }

    pub const fn body(self) -> Body {
        self.spec().body
    }

    /// The `route` label in `/metrics`: the path, or `other`.
    pub const fn label(self) -> &'static str {
        match self.path() {
            Some(path) => path,
            None => "other",
        }
    }

    /// Position in [`Route::ALL`], for per-route counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once_in_variant_order_with_other_last() {
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(route.index(), i, "{route:?}");
        }
        // A variant added before `Other` moves its index past the end of a list it is not in.
        assert_eq!(Route::Other.index(), Route::ALL.len() - 1);
    }

    #[test]
    fn each_path_leads_back_to_its_route_and_anything_else_is_other() {
        for route in Route::ALL {
            match route.path() {
                Some(path) => {
                    assert_eq!(Route::of(path), route, "{path}");
                    assert_eq!(route.label(), path, "{route:?}");
                    assert!(route.method().is_some(), "{route:?} takes no method");
                }
                None => assert_eq!(route, Route::Other),
            }
        }
        for path in ["/", "/event/", "/EVENT", "/events/x", "", "other"] {
            assert_eq!(Route::of(path), Route::Other, "{path:?}");
        }
        assert_eq!(Route::Other.label(), "other");
    }

    #[test]
    fn a_get_route_takes_head_and_a_post_route_takes_only_post() {
        assert!(Route::Healthz.allows(Method::Get));
        assert!(Route::Healthz.allows(Method::Head));
        assert!(!Route::Healthz.allows(Method::Post));
        assert!(Route::Event.allows(Method::Post));
        for method in [Method::Get, Method::Head, Method::Other] {
            assert!(!Route::Event.allows(method), "{method:?}");
            assert!(!Route::Other.allows(method), "{method:?}");
        }
        for route in Route::ALL.into_iter().filter(|r| r.method().is_some()) {
            assert!(!route.allow().is_empty(), "{route:?} has no Allow header");
        }
    }

    #[test]
    fn the_http_layer_gives_the_larger_body_limit_to_the_batch_route_alone() {
        let limits = super::super::Limits {
            max_body_bytes: 1,
            max_batch_bytes: 2,
            ..super::super::Limits::default()
        };
        for route in Route::ALL {
            let Some(path) = route.path() else { continue };
            let expected = match route.body() {
                Body::Batch => 2,
                Body::Event | Body::Ignored => 1,
            };
            assert_eq!(limits.max_body_for(path), expected, "{path}");
        }
    }
}
