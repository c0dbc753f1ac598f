//! Where a proxied call goes: the caller's path joined under the
//! integration's API base URL. The first half of the SSRF guard (the egress
//! guard, checking the addresses connected to, is the second): a path that
//! could leave the base URL — `..`, `//`, a backslash, `@`, an encoded
//! separator or dot segment, an absolute URL, a control character — is
//! refused before anything is resolved or sent, and the joined URL is checked
//! to have the base's scheme, host, port and path prefix.

use percent_encoding::percent_decode_str;
use reqwest::Url;

/// The longest path (with its query) accepted.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Why a path was refused. The message names what is wrong, never the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty or not starting with `/` (an absolute URL is refused here too).
    #[error("must start with `/` (a path under the integration's API, not a URL)")]
    NotAbsolutePath,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("must be at most {MAX_PATH_LEN} characters")]
    TooLong,
    /// A control character, a space, or a non-ASCII character (CR/LF
    /// included): they must be percent-encoded, and CR/LF never appear.
    #[error("must not contain control characters, spaces or unencoded non-ASCII characters")]
    Character,
    /// A fragment: it is never sent to a server.
    #[error("must not contain a fragment (`#`)")]
    Fragment,
    /// `//`: an empty segment (and, at the start, a network-path reference).
    #[error("must not contain empty segments (`//`)")]
    EmptySegment,
    /// `.` or `..`, plain or percent-encoded.
    #[error("must not contain `.` or `..` segments, plain or encoded")]
    DotSegment,
    /// A backslash, plain or encoded.
    #[error("must not contain backslashes, plain or encoded")]
    Backslash,
    /// An encoded `/` (`%2F`): a separator the API would see but we would not.
    #[error("must not contain encoded slashes (`%2F`)")]
    EncodedSlash,
    /// An encoded control character (`%0D%0A`).
    #[error("must not contain encoded control characters")]
    EncodedControl,
    /// `@` in the path: a classic way to disguise a host.
    #[error("must not contain `@` in the path")]
    At,
    /// The query sets the parameter the credential goes in.
    #[error("must not set the query parameter `{0}`: the proxy sets it")]
    CredentialParameter(String),
    /// The joined URL left the base URL (a bug guard: the checks above
    /// should make this impossible).
    #[error("must stay under the integration's API base URL")]
    OutsideBase,
}

/// A path the guard accepted, split into the path and its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath {
    path: String,
    query: Option<String>,
}

impl ApiPath {
    /// Checks `raw` (`/users/me?limit=5`).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolutePath);
        }
        if raw.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(PathError::Character);
        }
        if raw.contains('#') {
            return Err(PathError::Fragment);
        }
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        if path.contains('\\') {
            return Err(PathError::Backslash);
        }
        if path.contains('@') {
            return Err(PathError::At);
        }
        // Segments after the leading `/`; a trailing `/` leaves one empty
        // last segment, which APIs use (`/collections/`) and is harmless.
        let segments: Vec<&str> = path[1..].split('/').collect();
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.iter().enumerate() {
            if segment.is_empty() {
                if i == last {
                    continue;
                }
                return Err(PathError::EmptySegment);
            }
            check_encoded(segment)?;
            let decoded = percent_decode_str(segment).collect::<Vec<u8>>();
            if decoded == b"." || decoded == b".." {
                return Err(PathError::DotSegment);
            }
        }
        if let Some(q) = query {
            check_encoded_controls(q)?;
        }
        Ok(Self {
            path: path.to_owned(),
            query: query.map(str::to_owned),
        })
    }

    /// The path with segments that look like identifiers (digits, long
    /// tokens, e-mail-like) replaced by `{id}`: what the audit trail keeps,
    /// so that it holds the call's shape and not a user's data.
    pub fn template(&self) -> String {
        let mut out = String::with_capacity(self.path.len());
        for segment in self.path[1..].split('/') {
            out.push('/');
            // Versions (`v1`) and names with a digit (`oauth2`) stay; ids
            // (numbers, UUIDs, hex or base64 ids, dates, file names) go.
            let digits = segment.bytes().filter(u8::is_ascii_digit).count();
            let looks_like_id = segment.len() > 24
                || digits >= 4
                || (digits > 0 && digits == segment.len())
                || segment.bytes().any(|b| b == b'%' || b == b'.');
            if looks_like_id && !segment.is_empty() {
                out.push_str("{id}");
            } else {
                out.push_str(segment);
            }
        }
        out
    }

    /// This path joined under `base`: the base's path, then this path. The
    /// result keeps the base's scheme, host and port, and its path stays
    /// under the base's (checked, not assumed). `credential_parameter`, when
    /// the credential goes in the query, may not be set by the caller.
    pub fn join(&self, base: &Url, credential_parameter: Option<&str>) -> Result<Url, PathError> {
        if let (Some(name), Some(query)) = (credential_parameter, &self.query)
            && form_names(query).any(|n| n.eq_ignore_ascii_case(name))
        {
            return Err(PathError::CredentialParameter(name.to_owned()));
        }
        let prefix = base.path().trim_end_matches('/');
        let mut url = base.clone();
        url.set_path(&format!("{prefix}{}", self.path));
        url.set_query(self.query.as_deref());
        url.set_fragment(None);
        let same_origin = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default();
        if !same_origin || !url.path().starts_with(prefix) {
            return Err(PathError::OutsideBase);
        }
        Ok(url)
    }
}

/// The parameter names of a query, percent-decoded.
fn form_names(query: &str) -> impl Iterator<Item = String> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        percent_decode_str(&name.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    })
}

/// Refuses encoded separators, backslashes and control characters in a
/// path segment.
fn check_encoded(segment: &str) -> Result<(), PathError> {
    for code in encoded_bytes(segment) {
        match code {
            Some(b'/') => return Err(PathError::EncodedSlash),
            Some(b'\\') => return Err(PathError::Backslash),
            Some(b) if b < b' ' || b == 0x7f => return Err(PathError::EncodedControl),
            _ => {}
        }
    }
    Ok(())
}

fn check_encoded_controls(query: &str) -> Result<(), PathError> {
    for code in encoded_bytes(query) {
        if matches!(code, Some(b) if b < b' ' || b == 0x7f) {
            return Err(PathError::EncodedControl);
        }
    }
    Ok(())
}

/// The byte each `%XY` escape stands for (`None` for a malformed escape,
/// which is passed on as text).
fn encoded_bytes(s: &str) -> impl Iterator<Item = Option<u8>> + '_ {
    s.match_indices('%').map(move |(i, _)| {
        s.get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn ordinary_paths_join_under_the_base() {
        let p = ApiPath::parse("/users/me?limit=5&q=a%20b").unwrap();
        assert_eq!(
            p.join(&base("https://api.notion.com/v1"), None)
                .unwrap()
                .as_str(),
            "https://api.notion.com/v1/users/me?limit=5&q=a%20b"
        );
        assert_eq!(
            p.join(&base("https://api.github.com/"), None)
                .unwrap()
                .as_str(),
            "https://api.github.com/users/me?limit=5&q=a%20b"
        );
        let trailing = ApiPath::parse("/collections/").unwrap();
        assert_eq!(
            trailing
                .join(&base("http://127.0.0.1:9000/api"), None)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/api/collections/"
        );
        // `%20`, `%3A` and other escapes that are not separators pass.
        assert!(ApiPath::parse("/files/a%20b%3A").is_ok());
        // `@` and `/` in the query are data.
        assert!(ApiPath::parse("/search?email=a@b.example&next=/x").is_ok());
    }

    #[test]
    fn every_escape_from_the_base_is_refused() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::NotAbsolutePath),
            ("users", PathError::NotAbsolutePath),
            ("https://evil.example/x", PathError::NotAbsolutePath),
            ("//evil.example/x", PathError::EmptySegment),
            ("/a//b", PathError::EmptySegment),
            ("/../admin", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/%2e%2E/b", PathError::DotSegment),
            ("/a/%2E/b", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/a\\..\\b", PathError::Backslash),
            ("/a%5cb", PathError::Backslash),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2f..%2fb", PathError::EncodedSlash),
            ("/@evil.example", PathError::At),
            ("/a\r\nHost: evil", PathError::Character),
            ("/a%0d%0aHost:%20evil", PathError::EncodedControl),
            ("/a?x=%0A", PathError::EncodedControl),
            ("/a b", PathError::Character),
            ("/ä", PathError::Character),
            ("/a\tb", PathError::Character),
            ("/a#frag", PathError::Fragment),
        ];
        for (raw, want) in cases {
            assert_eq!(ApiPath::parse(raw).as_ref(), Err(want), "{raw:?}");
        }
        assert_eq!(
            ApiPath::parse(&format!("/{}", "a".repeat(MAX_PATH_LEN))),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn the_credential_parameter_is_the_proxys() {
        let p = ApiPath::parse("/x?KEY=mine&a=1").unwrap();
        assert_eq!(
            p.join(&base("https://api.example"), Some("key")),
            Err(PathError::CredentialParameter("key".into()))
        );
        assert!(p.join(&base("https://api.example"), Some("token")).is_ok());
    }

    #[test]
    fn templates_hide_identifiers() {
        let p = ApiPath::parse("/v1/repos/acme/site/issues/1234?state=open").unwrap();
        assert_eq!(p.template(), "/v1/repos/acme/site/issues/{id}");
        let p = ApiPath::parse("/oauth2/users/7/files/report.pdf").unwrap();
        assert_eq!(p.template(), "/oauth2/users/{id}/files/{id}");
        let p = ApiPath::parse("/users/a.b@x/files/0f9c2d3e4b5a69788796a5b4c3d2e1f0").unwrap_err();
        assert_eq!(p, PathError::At);
        let p = ApiPath::parse("/pages/5c6a28216bb14a7eb6e1c50111515c3d/").unwrap();
        assert_eq!(p.template(), "/pages/{id}/");
    }
}
