//! Reading a token endpoint's answer per the entry's quirks: JSON or
//! form-encoded bodies, tokens nested under a path (Slack's `authed_user`),
//! errors sent with HTTP 200 (GitHub, Slack), expiry missing (Salesforce),
//! metadata to keep (Notion's `workspace_id`).
//!
//! Token values become [`SecretString`] the moment they are read, so no
//! `Debug` of a parsed answer shows one; errors never repeat the body.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::provider::{Provider, ResponseFormat, TokenResponseSpec};

/// Largest body we read; token answers are a few KiB.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;
const MAX_ERROR_TEXT: usize = 500;

/// Which grant the answer is for (the refresh grant may be shaped
/// differently: Slack returns refreshed user tokens at the top level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenGrant {
    /// `grant_type=authorization_code`.
    AuthorizationCode,
    /// `grant_type=client_credentials`.
    ClientCredentials,
    /// `grant_type=refresh_token`.
    RefreshToken,
}

/// Where the lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    /// The provider said.
    Provider,
    /// The provider said nothing; the entry's `default_expires_in`.
    CatalogDefault,
}

/// Tokens read from a successful answer.
#[derive(Debug)]
pub struct TokenSet {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token, if the answer carried one. `None` on a refresh
    /// means "keep the old one" (design brief §4).
    pub refresh_token: Option<SecretString>,
    /// Lifetime from the time of the answer, with its source; `None` when
    /// neither the provider nor the entry gives one (a non-expiring token).
    pub expires_in: Option<(Duration, ExpirySource)>,
    /// Granted scopes, if the answer lists them.
    pub scopes: Option<Vec<String>>,
    /// `token_type`, when present at the top level (informational).
    pub token_type: Option<String>,
    /// The entry's metadata fields found in the answer (absent ones are
    /// left out: a refresh answer often lacks them, keep the old values).
    pub metadata: BTreeMap<String, Value>,
}

/// An OAuth error reported by the provider (RFC 6749 §5.2 shaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// HTTP status of the answer (200 for providers that send errors so).
    pub status: u16,
    /// The `error` code (`invalid_grant`).
    pub code: String,
    /// `error_description`, shortened and without control characters.
    pub description: Option<String>,
}

impl ProviderError {
    /// The grant is dead: the connection needs the user again. Slack says
    /// `invalid_refresh_token` / `invalid_code`; GitHub `bad_refresh_token` /
    /// `bad_verification_code`.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(
            self.code.as_str(),
            "invalid_grant"
                | "invalid_refresh_token"
                | "bad_refresh_token"
                | "bad_verification_code"
                | "invalid_code"
                | "token_revoked"
                | "code_already_used"
        )
    }
}

/// Why an answer did not yield tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenResponseError {
    /// The provider reported an OAuth error.
    #[error("the provider answered {} `{}`{}", .0.status, .0.code,
        .0.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider(ProviderError),
    /// A non-2xx answer without an OAuth error in it.
    #[error("the provider answered HTTP {status} without an OAuth error")]
    Status {
        /// HTTP status.
        status: u16,
    },
    /// A 2xx answer we cannot read (the body is never repeated).
    #[error("the provider's answer (HTTP {status}) is malformed: {reason}")]
    Malformed {
        /// HTTP status.
        status: u16,
        /// What is wrong.
        reason: String,
    },
}

impl TokenResponseError {
    /// Worth retrying later with backoff: 429, 5xx, or the provider's own
    /// `temporarily_unavailable` / `server_error`.
    pub fn is_transient(&self) -> bool {
        let status = match self {
            Self::Provider(e) => {
                if matches!(
                    e.code.as_str(),
                    "temporarily_unavailable" | "server_error" | "ratelimited"
                ) {
                    return true;
                }
                e.status
            }
            Self::Status { status } | Self::Malformed { status, .. } => *status,
        };
        status == 429 || (500..=599).contains(&status)
    }

    /// The grant is dead (see [`ProviderError::is_invalid_grant`]).
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Provider(e) if e.is_invalid_grant())
    }
}

impl Provider {
    /// Reads a token endpoint's answer per this entry's quirks. `None` for a
    /// non-OAuth entry is a programming error reported as `Malformed`.
    pub fn parse_token_response(
        &self,
        grant: TokenGrant,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<TokenSet, TokenResponseError> {
        let Some(oauth2) = self.oauth2() else {
            return Err(TokenResponseError::Malformed {
                status,
                reason: format!("{} has no OAuth 2.0 flow", self.id()),
            });
        };
        let spec = match grant {
            TokenGrant::RefreshToken => oauth2.refresh_response(),
            _ => oauth2.token_response(),
        };
        parse(
            spec,
            oauth2.default_expires_in(),
            status,
            content_type,
            body,
        )
    }
}

/// The entry-independent core of [`Provider::parse_token_response`].
pub fn parse(
    spec: &TokenResponseSpec,
    default_expires_in: Option<Duration>,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenSet, TokenResponseError> {
    let malformed = |reason: &str| TokenResponseError::Malformed {
        status,
        reason: reason.to_owned(),
    };
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(malformed("the body is too large"));
    }
    let success = (200..300).contains(&status);
    let Some(doc) = decode(spec, content_type, body) else {
        return Err(if success {
            malformed("the body is neither a JSON object nor a form with the expected fields")
        } else {
            TokenResponseError::Status { status }
        });
    };
    // An `error` member means failure whatever the status: GitHub and Slack
    // send errors with 200, and tokens next to an error are not to be trusted.
    if let Some(code) = doc
        .get("error")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        let description = doc
            .get("error_description")
            .and_then(Value::as_str)
            .map(clean);
        return Err(TokenResponseError::Provider(ProviderError {
            status,
            code: clean(code),
            description,
        }));
    }
    if !success {
        return Err(TokenResponseError::Status { status });
    }
    // Slack's envelope: `ok: false` is a failure even without `error`.
    if doc.get("ok") == Some(&Value::Bool(false)) {
        return Err(malformed("`ok` is false"));
    }
    let doc = Value::Object(doc);
    let access_token = match spec.access_token().lookup(&doc) {
        Some(Value::String(s)) if !s.is_empty() => SecretString::from(s.clone()),
        Some(_) => {
            return Err(malformed(&format!(
                "`{}` is not a non-empty string",
                spec.access_token()
            )));
        }
        None => {
            return Err(malformed(&format!(
                "no access token at `{}`",
                spec.access_token()
            )));
        }
    };
    let refresh_token = match spec.refresh_token().lookup(&doc) {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s.clone())),
        Some(Value::String(_)) | None => None,
        Some(_) => {
            return Err(malformed(&format!(
                "`{}` is not a string",
                spec.refresh_token()
            )));
        }
    };
    let expires_in = match spec.expires_in().lookup(&doc) {
        None => default_expires_in.map(|d| (d, ExpirySource::CatalogDefault)),
        Some(v) => match seconds(v) {
            Some(s) => Some((Duration::from_secs(s), ExpirySource::Provider)),
            None => {
                return Err(malformed(&format!(
                    "`{}` is not a number of seconds",
                    spec.expires_in()
                )));
            }
        },
    };
    let scopes = match spec.scope().lookup(&doc) {
        None => None,
        Some(Value::String(s)) => Some(
            s.split(spec.scope_separator())
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => {
            return Err(malformed(&format!(
                "`{}` is not a string or a list",
                spec.scope()
            )));
        }
    };
    let token_type = doc
        .get("token_type")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let metadata = spec
        .metadata()
        .iter()
        .filter_map(|(name, path)| {
            // Scalars only: a nested object could smuggle anything (tokens
            // included) into the unencrypted metadata.
            let v = path.lookup(&doc)?;
            matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                .then(|| (name.clone(), v.clone()))
        })
        .collect();
    Ok(TokenSet {
        access_token,
        refresh_token,
        expires_in,
        scopes,
        token_type,
        metadata,
    })
}

fn decode(
    spec: &TokenResponseSpec,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Map<String, Value>> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let as_json = || match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let as_form = || {
        let text = std::str::from_utf8(body).ok()?;
        let map: Map<String, Value> = form_urlencoded::parse(text.trim().as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        // Any text parses as a form; count it as one only if it holds what a
        // token answer must (an HTML error page does not).
        (map.contains_key(spec.access_token().as_str()) || map.contains_key("error")).then_some(map)
    };
    match spec.format() {
        ResponseFormat::Json => as_json(),
        ResponseFormat::Form => as_form(),
        ResponseFormat::Auto => match media.as_deref() {
            Some("application/json") => as_json(),
            Some(m) if m.ends_with("+json") => as_json(),
            Some("application/x-www-form-urlencoded") => as_form(),
            _ => as_json().or_else(as_form),
        },
    }
}

/// Seconds as a JSON number or a numeric string (form bodies have only
/// strings; some JSON providers quote numbers).
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect()
}
