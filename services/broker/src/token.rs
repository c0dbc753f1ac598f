//! Calls to a provider's token and revocation endpoints, built from its
//! catalog entry and sent through the egress guard (the only way the broker
//! reaches a provider).
//!
//! # Public API (stable)
//!
//! ```text
//! exchange_code(egress: &EgressClient, provider: &Provider, inputs: &ConnectionInputs, app: &OAuthApp,
//!     code: &SecretString, redirect_uri: &str, pkce_verifier: Option<&SecretString>)
//!     -> Result<TokenSet, TokenError>
//! refresh(egress, provider, inputs, app, refresh_token: &SecretString) -> Result<TokenSet, TokenError>
//! client_credentials(egress, provider, inputs, app, scopes: Option<&[String]>)
//!     -> Result<TokenSet, TokenError>
//! revoke(egress, provider, inputs, app, token: &SecretString, hint: TokenHint)
//!     -> Result<Revoked /* Revoked::Done | Revoked::NoEndpoint */, TokenError>
//! apply_tokens(state: &mut ConnectionState, tokens: TokenSet, now: OffsetDateTime)
//! TokenError { Endpoint(EndpointError) | Egress(EgressError) | Response { integration, error } }
//!     .is_invalid_grant() / .is_transient() ; impl From<TokenError> for BrokerError
//! ```
//!
//! # Why not the `oauth2` crate
//!
//! The catalog describes every token endpoint's quirks, and the catalog's
//! own reader ([`Provider::parse_token_response`]) is the one place token
//! answers are interpreted. `oauth2` 5 fits none of the quirks the catalog
//! exists for: its request builders send form bodies only (Notion and
//! Atlassian want JSON), it treats any 2xx as success and parses it as a
//! standard JSON token response (GitHub and Slack send errors with HTTP 200,
//! GitHub answers form-encoded unless asked for JSON, Slack nests user tokens
//! under `authed_user`), and its revocation request has no bearer style
//! (Dropbox, Slack). Using it for the plain entries and hand-rolling the rest
//! would mean two request paths and two response readers for one protocol;
//! the requests below are a few form fields, so they are built here, once,
//! from the entry, and sent through [`EgressClient`].

use std::collections::BTreeMap;

use base64::Engine as _;
use locksmith_egress::{EgressClient, EgressError, EgressRequest, ErrorKind};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::OffsetDateTime;

use crate::catalog::{
    BodyFormat, ClientAuth, ConnectionInputs, EndpointError, InputError, OAuth2Spec, Provider,
    RevocationStyle, TokenGrant, TokenResponseError, TokenSet,
};
use crate::credstore::OAuthApp;
use crate::error::{BrokerError, RETRY_AFTER};
use crate::record::{ConnectionState, Status};

/// Why a token or revocation call yielded nothing. Messages never carry a
/// token, a code, a secret or the provider's `error_description`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The entry has no such endpoint, or the connection's inputs do not fit
    /// its URL template.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The egress guard refused the endpoint, or it could not be reached.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The provider answered, but not with tokens.
    #[error("{integration}: {}", describe(.error))]
    Response {
        /// The integration.
        integration: String,
        /// What it answered.
        error: TokenResponseError,
    },
}

/// `TokenResponseError`'s text without the provider's free-form description.
fn describe(error: &TokenResponseError) -> String {
    match error {
        TokenResponseError::Provider(e) => {
            format!("the provider answered HTTP {} `{}`", e.status, e.code)
        }
        e @ (TokenResponseError::Status { .. } | TokenResponseError::Malformed { .. }) => {
            e.to_string()
        }
    }
}

impl TokenError {
    /// The grant is dead (`invalid_grant` and the providers' synonyms): the
    /// user must authorize again.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Response { error, .. } if error.is_invalid_grant())
    }

    /// Worth retrying later: the provider was unreachable, timed out, broke
    /// the connection, or answered 429 / 5xx / `temporarily_unavailable`.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Endpoint(_) => false,
            Self::Egress(e) => matches!(
                e.kind(),
                ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Protocol
            ),
            Self::Response { error, .. } => error.is_transient(),
        }
    }
}

impl From<TokenError> for BrokerError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Endpoint(EndpointError::Input(input)) => {
                let field = match &input {
                    InputError::Unknown(name)
                    | InputError::Missing(name)
                    | InputError::NoMatch { name, .. } => format!("inputs.{name}"),
                    InputError::BadUrl(_) => "inputs".to_owned(),
                };
                let text = input.to_string();
                // InputError's text starts with the field already.
                let reason = text
                    .strip_prefix(&format!("{field}: "))
                    .unwrap_or(&text)
                    .to_owned();
                BrokerError::InvalidArgument { field, reason }
            }
            TokenError::Endpoint(e @ EndpointError::NotApplicable { .. }) => {
                BrokerError::InvalidArgument {
                    field: "integration".into(),
                    reason: e.to_string(),
                }
            }
            // The flows always send a challenge when the entry says PKCE.
            TokenError::Endpoint(e @ EndpointError::MissingPkceChallenge(_)) => {
                BrokerError::Internal(e.to_string())
            }
            TokenError::Egress(e) => e.into(),
            e @ TokenError::Response { .. } if e.is_transient() => BrokerError::Unavailable {
                what: "the provider",
                retry_after: RETRY_AFTER,
            },
            TokenError::Response { integration, error } => {
                let (status, code) = match error {
                    TokenResponseError::Provider(p) => (p.status, p.code),
                    TokenResponseError::Status { status } => (status, format!("http_{status}")),
                    TokenResponseError::Malformed { status, .. } => {
                        (status, "malformed_response".to_owned())
                    }
                };
                BrokerError::Provider {
                    integration,
                    status,
                    code,
                }
            }
        }
    }
}

/// Which token a revocation names (RFC 7009 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenHint {
    fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The provider accepted it (RFC 7009: also for an unknown token).
    Done,
    /// The entry names no revocation endpoint: nothing was sent.
    NoEndpoint,
}

/// A request body's parameters. Values include secrets (client secret,
/// codes, tokens), so it has no `Debug`, and the text built from it goes
/// straight into the request.
struct Params(Vec<(String, String)>);

impl Params {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_owned(), value.into()));
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// The entry's extra token parameters, which never replace one the
    /// grant itself sets (`grant_type`, `code`, `refresh_token`).
    fn with_extras(mut self, extras: &BTreeMap<String, String>) -> Self {
        for (k, v) in extras {
            if !self.has(k) {
                self.push(k, v.clone());
            }
        }
        self
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before they
/// are joined for HTTP Basic.
fn basic_credentials(app: &OAuthApp) -> Option<HeaderValue> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let joined = format!(
        "{}:{}",
        encode(&app.client_id),
        encode(app.client_secret.expose_secret())
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(joined);
    // Base64 is always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `Authorization: Bearer <token>`, marked sensitive; `None` if the token
/// holds bytes no header may carry (then it is no token of the provider's).
fn bearer(token: &SecretString) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn oauth2_of<'p>(provider: &'p Provider, what: &'static str) -> Result<&'p OAuth2Spec, TokenError> {
    provider.oauth2().ok_or_else(|| {
        TokenError::Endpoint(EndpointError::NotApplicable {
            integration: provider.id().to_string(),
            mode: provider.auth_mode().as_str(),
            what,
        })
    })
}

/// A POST to `url` with `params` per the entry: client authentication
/// (Basic or in the body), body format (form or JSON), the entry's extra
/// headers, and `Accept: application/json` when the entry asks for it.
fn build(
    oauth2: &OAuth2Spec,
    url: reqwest::Url,
    app: &OAuthApp,
    mut params: Params,
) -> Result<EgressRequest, TokenError> {
    let mut request = EgressRequest::post(url);
    match oauth2.client_auth() {
        ClientAuth::Basic => {
            if let Some(value) = basic_credentials(app) {
                request = request.header(AUTHORIZATION, value);
            }
        }
        ClientAuth::Body => {
            params.push("client_id", app.client_id.clone());
            params.push("client_secret", app.client_secret.expose_secret());
        }
    }
    request = match oauth2.token_request_format() {
        BodyFormat::Form => request.form(params.0.iter().map(|(k, v)| (k, v))),
        BodyFormat::Json => {
            let body: serde_json::Map<String, Value> = params
                .0
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            // `Value`'s Display is its JSON text and cannot fail.
            request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Value::Object(body).to_string())
        }
    };
    if oauth2.accept_json() {
        request = request.header(ACCEPT, HeaderValue::from_static("application/json"));
    }
    for (name, value) in oauth2.token_request_headers() {
        // Validation refuses Authorization and Content-Type among an entry's
        // headers; checked again so an entry can never replace ours.
        if name != CONTENT_TYPE && name != AUTHORIZATION {
            request.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(request)
}

/// Sends a token request for `grant` and reads the answer with the entry's
/// own reader (errors with HTTP 200, nested tokens, form bodies).
async fn token_call(
    egress: &EgressClient,
    provider: &Provider,
    inputs: &ConnectionInputs,
    app: &OAuthApp,
    grant: TokenGrant,
    params: Params,
) -> Result<TokenSet, TokenError> {
    let oauth2 = oauth2_of(provider, "token endpoint")?;
    let url = provider.token_url(inputs)?;
    let params = params.with_extras(oauth2.token_params());
    let request = build(oauth2, url, app, params)?;
    let response = egress.send(request).await?;
    let content_type = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // A 3xx is never followed by the egress client; the reader sees a
    // non-2xx without an OAuth error and answers `Status`, as it should.
    provider
        .parse_token_response(
            grant,
            response.status.as_u16(),
            content_type,
            &response.body,
        )
        .map_err(|error| TokenError::Response {
            integration: provider.id().to_string(),
            error,
        })
}

/// Exchanges an authorization code (RFC 6749 §4.1.3) with the PKCE verifier
/// (RFC 7636) when the flow used one.
pub async fn exchange_code(
    egress: &EgressClient,
    provider: &Provider,
    inputs: &ConnectionInputs,
    app: &OAuthApp,
    code: &SecretString,
    redirect_uri: &str,
    pkce_verifier: Option<&SecretString>,
) -> Result<TokenSet, TokenError> {
    let mut params = Params::new();
    params.push("grant_type", "authorization_code");
    params.push("code", code.expose_secret());
    params.push("redirect_uri", redirect_uri);
    if let Some(verifier) = pkce_verifier {
        params.push("code_verifier", verifier.expose_secret());
    }
    token_call(
        egress,
        provider,
        inputs,
        app,
        TokenGrant::AuthorizationCode,
        params,
    )
    .await
}

/// Uses a refresh token (RFC 6749 §6). A `None` refresh token in the answer
/// means the provider keeps the old one valid (see [`apply_tokens`]).
pub async fn refresh(
    egress: &EgressClient,
    provider: &Provider,
    inputs: &ConnectionInputs,
    app: &OAuthApp,
    refresh_token: &SecretString,
) -> Result<TokenSet, TokenError> {
    let mut params = Params::new();
    params.push("grant_type", "refresh_token");
    params.push("refresh_token", refresh_token.expose_secret());
    token_call(
        egress,
        provider,
        inputs,
        app,
        TokenGrant::RefreshToken,
        params,
    )
    .await
}

/// The app's own token (RFC 6749 §4.4). `scopes`: `None` → the entry's
/// default scopes (none sent when it has none).
pub async fn client_credentials(
    egress: &EgressClient,
    provider: &Provider,
    inputs: &ConnectionInputs,
    app: &OAuthApp,
    scopes: Option<&[String]>,
) -> Result<TokenSet, TokenError> {
    let oauth2 = oauth2_of(provider, "token endpoint")?;
    let scopes = scopes.unwrap_or(oauth2.default_scopes());
    let mut params = Params::new();
    params.push("grant_type", "client_credentials");
    if !scopes.is_empty() {
        params.push("scope", scopes.join(oauth2.scope_separator()));
    }
    token_call(
        egress,
        provider,
        inputs,
        app,
        TokenGrant::ClientCredentials,
        params,
    )
    .await
}

/// Revokes `token` at the entry's revocation endpoint: RFC 7009 (`token` and
/// `token_type_hint`, client authentication and body format as for token
/// requests) or the bearer style (the token as `Authorization: Bearer`, no
/// body; pass the access token then). [`Revoked::NoEndpoint`] when the entry
/// names none.
pub async fn revoke(
    egress: &EgressClient,
    provider: &Provider,
    inputs: &ConnectionInputs,
    app: &OAuthApp,
    token: &SecretString,
    hint: TokenHint,
) -> Result<Revoked, TokenError> {
    let Some((url, style)) = provider.revocation_url(inputs)? else {
        return Ok(Revoked::NoEndpoint);
    };
    let oauth2 = oauth2_of(provider, "revocation endpoint")?;
    let request = match style {
        RevocationStyle::Rfc7009 => {
            let mut params = Params::new();
            params.push("token", token.expose_secret());
            params.push("token_type_hint", hint.as_str());
            build(oauth2, url, app, params)?
        }
        RevocationStyle::Bearer => {
            let mut request = EgressRequest::post(url);
            if let Some(value) = bearer(token) {
                request = request.header(AUTHORIZATION, value);
            }
            request.header(ACCEPT, HeaderValue::from_static("application/json"))
        }
    };
    let response = egress.send(request).await?;
    let status = response.status.as_u16();
    let fail = |error| TokenError::Response {
        integration: provider.id().to_string(),
        error,
    };
    // An OAuth error in a JSON body is a failure whatever the status: Slack's
    // `auth.revoke` answers `{"ok": false, "error": …}` with 200.
    let doc = serde_json::from_slice::<Value>(&response.body).ok();
    let code = doc
        .as_ref()
        .and_then(|d| d.get("error"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    if let Some(code) = code {
        return Err(fail(TokenResponseError::Provider(
            crate::catalog::ProviderError {
                status,
                code: code.chars().filter(|c| !c.is_control()).take(100).collect(),
                description: None,
            },
        )));
    }
    if !response.status.is_success() {
        return Err(fail(TokenResponseError::Status { status }));
    }
    if doc.as_ref().and_then(|d| d.get("ok")) == Some(&Value::Bool(false)) {
        return Err(fail(TokenResponseError::Malformed {
            status,
            reason: "`ok` is false".into(),
        }));
    }
    Ok(Revoked::Done)
}

/// Writes a token answer into a connection at `now` (the time of the
/// answer): the access token; the refresh token if the answer has one, else
/// the old one is kept (design brief §4); the expiry (`None` when neither the
/// provider nor the entry gives one); scopes if listed; metadata merged (a
/// refresh answer often lacks it). The connection becomes active with no
/// failures recorded. The lease is left as it is: the refresh protocol
/// decides about it.
pub fn apply_tokens(state: &mut ConnectionState, tokens: TokenSet, now: OffsetDateTime) {
    // The record keeps whole seconds: round down here, so the state in hand
    // is exactly what a read answers (and an expiry is never later).
    let now = whole_seconds(now);
    state.access_token = Some(tokens.access_token);
    if let Some(refresh) = tokens.refresh_token {
        state.refresh_token = Some(refresh);
    }
    // A provider's absurd `expires_in` (u64::MAX) must not overflow the clock:
    // past what a date can hold, the token is treated as not expiring.
    state.expires_at = tokens
        .expires_in
        .and_then(|(lifetime, _)| now.checked_add(time::Duration::try_from(lifetime).ok()?));
    if let Some(scopes) = tokens.scopes {
        state.scopes = scopes;
    }
    for (name, value) in tokens.metadata {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        state.metadata.insert(name, text);
    }
    state.status = Status::Active;
    state.failures = 0;
    state.retry_at = None;
    state.updated_at = now;
}

/// `at` without its fraction of a second (the record's precision).
pub fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}
