//! The route table: method + path pattern → endpoint. A path that matches no pattern
//! is 404 `M_UNRECOGNIZED`; a path that matches with another method is 405.

use super::error::MatrixError;
use super::http::{percent_decode, Method};

/// Every endpoint Neurite serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ClientVersions,
    WellKnownClient,
    WellKnownServer,
    KeyServer,
    FederationVersion,
}

use Endpoint as E;
use Method::{Delete, Get, Post, Put};

/// `(method, pattern, endpoint)`. `{name}` matches one path segment. Client paths are
/// written with `v3`; `r0` requests are normalized to `v3` before matching.
const ROUTES: &[(Method, &str, Endpoint)] = &[
    (Get, "/_matrix/client/versions", E::ClientVersions),
    (Get, "/.well-known/matrix/client", E::WellKnownClient),
    (Get, "/.well-known/matrix/server", E::WellKnownServer),
    (Get, "/_matrix/key/v2/server", E::KeyServer),
    (Get, "/_matrix/federation/v1/version", E::FederationVersion),
];

// Silence unused-import lints until later endpoints use these methods.
const _: [Method; 3] = [Post, Put, Delete];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// Decoded `{param}` segments, in pattern order.
    pub params: Vec<String>,
}

/// Maps `r0` client paths onto `v3`.
fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/_matrix/client/r0/") {
        Some(rest) => format!("/_matrix/client/v3/{rest}").into(),
        None => path.into(),
    }
}

/// Matches a raw path against a pattern, returning the decoded parameters.
fn match_pattern(pattern: &str, path: &str) -> Option<Result<Vec<String>, MatrixError>> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(Ok(params)),
            (Some(p), Some(s)) if p.starts_with('{') => {
                if s.is_empty() {
                    return None;
                }
                match percent_decode(s, false) {
                    Some(decoded) => params.push(decoded),
                    None => return Some(Err(MatrixError::invalid_param("Path segment is not valid UTF-8"))),
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Finds the endpoint for a request.
pub fn route(method: Method, path: &str) -> Result<Route, MatrixError> {
    let path = normalize(path);
    let mut path_known = false;
    for (m, pattern, endpoint) in ROUTES {
        if let Some(params) = match_pattern(pattern, &path) {
            let params = params?;
            if *m == method || (method == Method::Head && *m == Method::Get) {
                return Ok(Route {
                    endpoint: *endpoint,
                    params,
                });
            }
            path_known = true;
        }
    }
    Err(if path_known {
        MatrixError::method_not_allowed()
    } else {
        MatrixError::unrecognized()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_known_paths() {
        assert_eq!(
            route(Get, "/_matrix/client/versions").map(|r| r.endpoint),
            Ok(E::ClientVersions)
        );
        assert_eq!(
            route(Get, "/_matrix/key/v2/server").map(|r| r.endpoint),
            Ok(E::KeyServer)
        );
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405() {
        assert_eq!(route(Get, "/_matrix/client/v3/nope").unwrap_err().status(), 404);
        assert_eq!(route(Get, "/").unwrap_err().errcode, "M_UNRECOGNIZED");
        let err = route(Post, "/_matrix/client/versions").unwrap_err();
        assert_eq!((err.status(), err.errcode), (405, "M_UNRECOGNIZED"));
    }

    #[test]
    fn params_are_decoded() {
        assert_eq!(
            match_pattern("/a/{x}/b", "/a/%21r%3Ahs/b"),
            Some(Ok(vec!["!r:hs".to_owned()]))
        );
        assert_eq!(match_pattern("/a/{x}/b", "/a//b"), None);
        assert_eq!(match_pattern("/a/{x}", "/a/x/y"), None);
        assert!(matches!(match_pattern("/a/{x}", "/a/%ff"), Some(Err(_))));
    }
}
