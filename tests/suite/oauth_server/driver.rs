//! The headless driver for [`OAuthServer`]'s login and consent pages: a
//! cookie jar, a minimal HTML form reader, and redirects followed by hand up
//! to the redirect that leaves the server (the client's `redirect_uri`, never
//! requested).

use std::{collections::BTreeMap, fmt};

use reqwest::{StatusCode, Url, header};

use super::{MAX_STEPS, OAuthServer};

/// Where an authorization ended: the redirect to the client's `redirect_uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// The redirect URL exactly as the server sent it (hand it to a callback route).
    pub location: String,
    /// Its query parameters (`code`, `state`, `iss`, or `error`, `error_description`, ...).
    pub params: BTreeMap<String, String>,
    pub state: Option<String>,
    /// The authorization code, or the error the provider redirected with.
    pub result: Result<String, ProviderError>,
}

/// An error the provider sent to the redirect URI (RFC 6749 §4.1.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    pub error: String,
    pub description: Option<String>,
}

/// The driver could not reach the redirect URI: an error page, an unexpected
/// answer, or too many steps.
#[derive(Clone, Debug)]
pub struct DriverError {
    pub reason: String,
    /// The last URL requested.
    pub url: String,
    pub status: Option<u16>,
    pub body: String,
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.reason, self.url)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if !self.body.is_empty() {
            let body: String = self.body.chars().take(2000).collect();
            write!(f, ": {body}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {}

/// What the user does on the login and consent pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Sign in as this subject and allow every requested scope.
    Approve { login: String },
    /// Press Cancel on the first page: the provider answers `access_denied`.
    Deny,
}

impl OAuthServer {
    /// Drives an authorization request headlessly as subject `alice`,
    /// approving everything. See [`OAuthServer::authorize_as`].
    pub async fn authorize(&self, url: &str) -> Result<Callback, DriverError> {
        self.authorize_as(
            url,
            &Decision::Approve {
                login: "alice".into(),
            },
        )
        .await
    }

    /// Follows redirects from `url` with a fresh cookie jar, submits the login
    /// and consent forms (or Cancel), and stops at the first redirect that
    /// leaves the server: the client's redirect URI, which is never requested.
    pub async fn authorize_as(
        &self,
        url: &str,
        decision: &Decision,
    ) -> Result<Callback, DriverError> {
        let http = Self::http();
        let origin = Url::parse(&self.issuer).expect("issuer").origin();
        let mut jar = CookieJar::default();
        let mut current = Url::parse(url).map_err(|e| DriverError {
            reason: format!("not a URL: {e}"),
            url: url.to_owned(),
            status: None,
            body: String::new(),
        })?;
        let mut post: Option<Vec<(String, String)>> = None;
        for _ in 0..MAX_STEPS {
            let fail = |reason: String, status: Option<u16>, body: String| DriverError {
                reason,
                url: current.to_string(),
                status,
                body,
            };
            let mut request = match &post {
                Some(form) => http.post(current.clone()).form(form),
                None => http.get(current.clone()),
            };
            if let Some(cookies) = jar.header_for(&current) {
                request = request.header(header::COOKIE, cookies);
            }
            let resp = request
                .send()
                .await
                .map_err(|e| fail(format!("request failed: {e}"), None, String::new()))?;
            jar.store(&current, resp.headers());
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        fail(
                            "redirect without Location".into(),
                            Some(status.as_u16()),
                            String::new(),
                        )
                    })?
                    .to_owned();
                let next = current.join(&location).map_err(|e| {
                    fail(
                        format!("bad Location {location:?}: {e}"),
                        Some(status.as_u16()),
                        String::new(),
                    )
                })?;
                if next.origin() != origin {
                    return Ok(Callback::from_location(&location, &next));
                }
                current = next;
                post = None;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            if status != StatusCode::OK {
                return Err(fail(
                    "unexpected answer".into(),
                    Some(status.as_u16()),
                    body,
                ));
            }
            let forms = parse_forms(&body);
            let chosen = match decision {
                Decision::Deny => forms.iter().find(|f| f.action.ends_with("/abort")),
                Decision::Approve { .. } => forms.iter().find(|f| !f.action.ends_with("/abort")),
            }
            .ok_or_else(|| {
                fail(
                    "a page without the form to submit".into(),
                    Some(200),
                    body.clone(),
                )
            })?;
            if !chosen.method.eq_ignore_ascii_case("post") {
                return Err(fail(
                    format!("form method {}", chosen.method),
                    Some(200),
                    body.clone(),
                ));
            }
            let login = match decision {
                Decision::Approve { login } => login.as_str(),
                Decision::Deny => "",
            };
            let fields = chosen
                .inputs
                .iter()
                .map(|input| {
                    let value = match (input.kind.as_str(), input.value.is_empty()) {
                        ("text", true) => login.to_owned(),
                        ("password", true) => "any-password".to_owned(),
                        _ => input.value.clone(),
                    };
                    (input.name.clone(), value)
                })
                .collect();
            current = current.join(&chosen.action).map_err(|e| {
                fail(
                    format!("bad form action {:?}: {e}", chosen.action),
                    Some(200),
                    body.clone(),
                )
            })?;
            post = Some(fields);
        }
        Err(DriverError {
            reason: format!("no redirect to the client after {MAX_STEPS} steps"),
            url: url.to_owned(),
            status: None,
            body: String::new(),
        })
    }
}

impl Callback {
    fn from_location(location: &str, url: &Url) -> Callback {
        let params: BTreeMap<String, String> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let result = match (params.get("code"), params.get("error")) {
            (Some(code), None) => Ok(code.clone()),
            (_, error) => Err(ProviderError {
                error: error.cloned().unwrap_or_default(),
                description: params.get("error_description").cloned(),
            }),
        };
        Callback {
            location: location.to_owned(),
            state: params.get("state").cloned(),
            params,
            result,
        }
    }

    /// The code, panicking with the provider's error if there is none.
    pub fn code(&self) -> &str {
        match &self.result {
            Ok(code) => code,
            Err(error) => panic!("the provider answered {error:?} ({})", self.location),
        }
    }
}

/// Just enough of a cookie jar for one host: name, value and path (RFC 6265
/// path matching); a cookie set empty or already expired is removed.
#[derive(Default)]
struct CookieJar {
    cookies: Vec<(String, String, String)>,
}

impl CookieJar {
    fn store(&mut self, url: &Url, headers: &header::HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let mut path = default_path(url.path());
            let mut expired = value.is_empty();
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.trim().to_ascii_lowercase().as_str() {
                    "path" if val.starts_with('/') => path = val.trim().to_owned(),
                    "max-age" => expired |= val.trim().parse::<i64>().is_ok_and(|s| s <= 0),
                    "expires" => expired |= val.contains("1970"),
                    _ => {}
                }
            }
            self.cookies.retain(|(n, _, p)| !(n == &name && p == &path));
            if !expired {
                self.cookies.push((name, value, path));
            }
        }
    }

    fn header_for(&self, url: &Url) -> Option<String> {
        let path = url.path();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, _, cookie_path)| path_matches(path, cookie_path))
            .map(|(name, value, _)| format!("{name}={value}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => path[..i].to_owned(),
    }
}

fn path_matches(path: &str, cookie_path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path[cookie_path.len()..].starts_with('/')))
}

struct Form {
    action: String,
    method: String,
    inputs: Vec<Input>,
}

struct Input {
    name: String,
    kind: String,
    value: String,
}

/// The forms of an HTML page: enough for the server's own login and consent
/// pages (double-quoted attributes).
fn parse_forms(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let end = after.find("</form>").unwrap_or(after.len());
        let body = &after[..end];
        let tag_end = body.find('>').unwrap_or(body.len());
        let tag = &body[..tag_end];
        let mut inputs = Vec::new();
        let mut inner = &body[tag_end..];
        while let Some(i) = inner.find("<input") {
            let input = &inner[i..];
            let input_tag = &input[..input.find('>').unwrap_or(input.len())];
            if let Some(name) = attribute(input_tag, "name") {
                inputs.push(Input {
                    name,
                    kind: attribute(input_tag, "type").unwrap_or_else(|| "text".into()),
                    value: attribute(input_tag, "value").unwrap_or_default(),
                });
            }
            inner = &input[input_tag.len()..];
        }
        forms.push(Form {
            action: attribute(tag, "action").unwrap_or_default(),
            method: attribute(tag, "method").unwrap_or_else(|| "get".into()),
            inputs,
        });
        rest = &after[end..];
    }
    forms
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(html_unescape(&tag[start..end]))
}

fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else { break };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix('#')
                .and_then(|n| match n.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                })
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
