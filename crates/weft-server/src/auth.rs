//! Who may do what over HTTP. A bearer token, when one is set, is needed for every mutation
//! (any method but GET and HEAD). Two rules guard the loopback default, where there may be no
//! token, from web pages the operator happens to visit: a mutation from another origin (its
//! `Origin` header names another host) is refused, and a server bound to loopback answers only
//! requests addressed to a loopback name (`Host`), which defeats DNS rebinding.

use crate::problem::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The rules a server applies.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Option<Arc<str>>,
    loopback: bool,
}

impl Guard {
    /// The rules for a server bound to `addr`: refused (with why) when the address is not a
    /// loopback one and there is no token.
    pub fn new(addr: SocketAddr, token: Option<String>) -> Result<Guard, String> {
        let token = token.filter(|t| !t.is_empty());
        let loopback = addr.ip().is_loopback();
        if !loopback && token.is_none() {
            return Err(format!(
                "refusing to serve HTTP on {addr}, which other machines can reach, without a token: set --token or WEFT_TOKEN (or bind 127.0.0.1)"
            ));
        }
        Ok(Guard {
            token: token.map(Arc::from),
            loopback,
        })
    }

    fn check(&self, req: &Request) -> Result<(), ApiError> {
        let headers = req.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if self.loopback && !is_loopback_host(host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this server answers only requests to a loopback name (localhost, 127.0.0.1, [::1]), not `{host}`"),
            ));
        }
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
            if authority != host {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("a request from another origin ({origin}) cannot change anything here"),
                ));
            }
        }
        if let Some(token) = &self.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or("");
            if !same(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this needs the server's token: send `Authorization: Bearer <token>`",
                ));
            }
        }
        Ok(())
    }
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware: every request passes the guard first.
pub async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    match guard.check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, host: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri("/api/plans")
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).expect("a request")
    }

    #[test]
    fn a_reachable_address_needs_a_token() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert!(Guard::new(any, None).unwrap_err().contains("--token"));
        assert!(Guard::new(any, Some(String::new())).is_err());
        assert!(Guard::new(any, Some("s3cret".into())).is_ok());
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert!(Guard::new(lo, None).is_ok());
    }

    #[test]
    fn mutations_need_the_token_reads_do_not() {
        let g =
            Guard::new("127.0.0.1:1".parse().expect("addr"), Some("tok".into())).expect("guard");
        assert!(g.check(&request(Method::GET, "127.0.0.1:1", &[])).is_ok());
        let e = g
            .check(&request(Method::POST, "127.0.0.1:1", &[]))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let wrong = [("authorization", "Bearer tok2")];
        assert!(g
            .check(&request(Method::POST, "127.0.0.1:1", &wrong))
            .is_err());
        let right = [("authorization", "Bearer tok")];
        assert!(g
            .check(&request(Method::POST, "127.0.0.1:1", &right))
            .is_ok());
    }

    #[test]
    fn loopback_answers_loopback_names_and_its_own_origin_only() {
        let g = Guard::new("127.0.0.1:8080".parse().expect("addr"), None).expect("guard");
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "localhost",
        ] {
            assert!(g.check(&request(Method::GET, host, &[])).is_ok(), "{host}");
        }
        let e = g
            .check(&request(Method::GET, "evil.example:8080", &[]))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let same_origin = [("origin", "http://127.0.0.1:8080")];
        assert!(g
            .check(&request(Method::POST, "127.0.0.1:8080", &same_origin))
            .is_ok());
        let other = [("origin", "http://evil.example")];
        let e = g
            .check(&request(Method::POST, "127.0.0.1:8080", &other))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
    }
}
