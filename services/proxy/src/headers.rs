//! Headers across the proxy: what a caller may send upstream, what comes
//! back, and where the credential goes.
//!
//! Upstream never sees the caller's own credentials (`Authorization`,
//! `Cookie`, `Proxy-Authorization`), hop-by-hop headers (RFC 9110 §7.6.1,
//! and any the caller's `Connection` names), `Host` or `Forwarded`; the
//! integration's default headers are added unless the caller set them, and
//! the credential is set last so nothing the caller sends can replace it.
//! The caller never sees `Set-Cookie` (the session would be the proxy's, not
//! theirs) or hop-by-hop headers.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use secrecy::{ExposeSecret, SecretString};

/// Most headers accepted from a caller.
pub const MAX_HEADERS: usize = 100;

/// Hop-by-hop headers: meaningful for one connection only.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers that are the caller's, or the proxy's to set.
const NEVER_UPSTREAM: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Response headers the caller never gets.
const NEVER_BACK: &[&str] = &["set-cookie", "set-cookie2"];

/// Where the credential goes, as the integration's API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `Authorization: Bearer <credential>`.
    Bearer,
    /// `<name>: <prefix><credential>`.
    Header {
        /// The header.
        name: HeaderName,
        /// Text before the credential.
        prefix: String,
    },
    /// `?<name>=<credential>`.
    Query {
        /// The parameter.
        name: String,
    },
    /// `Authorization: Basic base64(<credential>)`, the credential being
    /// `user:password`.
    Basic,
}

impl Placement {
    /// The query parameter the credential takes, if it goes in the query.
    pub fn query_parameter(&self) -> Option<&str> {
        match self {
            Placement::Query { name } => Some(name),
            _ => None,
        }
    }
}

/// Why a caller's header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not a valid header name.
    #[error("header {index} has an invalid name")]
    Name {
        /// Its position.
        index: usize,
    },
    /// Not a valid header value (CR, LF or NUL in it).
    #[error("header {name} has an invalid value")]
    Value {
        /// The header's name.
        name: String,
    },
    /// More than [`MAX_HEADERS`].
    #[error("at most {MAX_HEADERS} headers are accepted")]
    TooMany,
}

/// The headers a caller asked to send, filtered for upstream.
pub fn upstream_request_headers<'a>(
    given: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<HeaderMap, HeaderError> {
    let mut headers = HeaderMap::new();
    let mut count = 0;
    for (index, (name, value)) in given.into_iter().enumerate() {
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeaderError::TooMany);
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name { index })?;
        let value = HeaderValue::from_bytes(value).map_err(|_| HeaderError::Value {
            name: name.as_str().to_owned(),
        })?;
        headers.append(name, value);
    }
    strip_hop_by_hop(&mut headers);
    for name in NEVER_UPSTREAM {
        headers.remove(*name);
    }
    let proxy_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_headers {
        headers.remove(name);
    }
    Ok(headers)
}

/// The integration's default headers (`Notion-Version`), where the caller
/// set none of its own, then the credential as `placement` says (the query
/// case is the URL's business: see [`crate::target::ApiPath::join`]).
pub fn inject(
    headers: &mut HeaderMap,
    defaults: &HeaderMap,
    placement: &Placement,
    credential: &SecretString,
) -> Result<(), InjectError> {
    for (name, value) in defaults {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let secret = credential.expose_secret();
    let (name, text) = match placement {
        Placement::Bearer => (header::AUTHORIZATION, format!("Bearer {secret}")),
        Placement::Header { name, prefix } => (name.clone(), format!("{prefix}{secret}")),
        Placement::Basic => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
            (header::AUTHORIZATION, format!("Basic {encoded}"))
        }
        Placement::Query { .. } => return Ok(()),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| InjectError)?;
    // Kept out of Debug output (and HPACK's index for HTTP/2).
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

/// The stored credential cannot be a header value (a control character in
/// it); never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection's credential cannot be sent in a header")]
pub struct InjectError;

/// An API's response headers, filtered for the caller.
pub fn downstream_response_headers(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    for name in NEVER_BACK {
        headers.remove(*name);
    }
    headers
}

/// Removes hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        upstream_request_headers(pairs.iter().map(|(n, v)| (*n, v.as_bytes()))).unwrap()
    }

    #[test]
    fn the_callers_credentials_and_hop_by_hop_headers_stay_behind() {
        let h = given(&[
            ("Authorization", "Bearer caller"),
            ("Cookie", "session=1"),
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Foo", "1"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "p"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("Host", "evil.example"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("X-Custom", "kept"),
        ]);
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "content-type", "x-custom"]);
    }

    #[test]
    fn bad_headers_are_named() {
        let err =
            upstream_request_headers([("x-a", b"ok".as_slice()), ("bad name", b"v".as_slice())])
                .unwrap_err();
        assert_eq!(err, HeaderError::Name { index: 1 });
        let err = upstream_request_headers([("x-a", b"a\r\nb".as_slice())]).unwrap_err();
        assert_eq!(err, HeaderError::Value { name: "x-a".into() });
        let many: Vec<(&str, &[u8])> = (0..=MAX_HEADERS)
            .map(|_| ("x-a", b"v".as_slice()))
            .collect();
        assert_eq!(
            upstream_request_headers(many).unwrap_err(),
            HeaderError::TooMany
        );
    }

    #[test]
    fn the_credential_goes_where_the_catalog_says_and_wins() {
        let secret = SecretString::from("tok-123");
        let mut defaults = HeaderMap::new();
        defaults.insert("notion-version", HeaderValue::from_static("2022-06-28"));
        defaults.insert("accept", HeaderValue::from_static("application/json"));

        let mut h = given(&[("Accept", "text/plain"), ("X-Api-Key", "callers")]);
        inject(&mut h, &defaults, &Placement::Bearer, &secret).unwrap();
        assert_eq!(h["authorization"], "Bearer tok-123");
        assert_eq!(h["notion-version"], "2022-06-28");
        assert_eq!(
            h["accept"], "text/plain",
            "the caller's own header wins over a default"
        );
        assert!(h["authorization"].is_sensitive());

        let placement = Placement::Header {
            name: HeaderName::from_static("x-api-key"),
            prefix: String::new(),
        };
        inject(&mut h, &HeaderMap::new(), &placement, &secret).unwrap();
        assert_eq!(h.get_all("x-api-key").iter().count(), 1);
        assert_eq!(
            h["x-api-key"], "tok-123",
            "the credential replaces the caller's"
        );

        let mut h = HeaderMap::new();
        let user_pass = SecretString::from("user:pa ss");
        inject(&mut h, &HeaderMap::new(), &Placement::Basic, &user_pass).unwrap();
        assert_eq!(h["authorization"], "Basic dXNlcjpwYSBzcw==");

        let mut h = HeaderMap::new();
        let query = Placement::Query { name: "key".into() };
        inject(&mut h, &HeaderMap::new(), &query, &secret).unwrap();
        assert!(h.is_empty());

        let bad = SecretString::from("a\nb");
        assert_eq!(
            inject(
                &mut HeaderMap::new(),
                &HeaderMap::new(),
                &Placement::Bearer,
                &bad
            ),
            Err(InjectError)
        );
    }

    #[test]
    fn cookies_and_hop_by_hop_headers_never_come_back() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.insert("connection", HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("10"));
        let back = downstream_response_headers(h);
        let mut names: Vec<&str> = back.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-ratelimit-remaining"]);
    }
}
