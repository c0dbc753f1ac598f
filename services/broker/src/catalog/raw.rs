//! The catalog's wire form: what serde reads from the TOML file (and, for
//! tenants' custom providers, from JSON), before any validation.
//!
//! Every struct refuses unknown fields, so a misspelt key (`tokne_url`) is an
//! error naming it instead of a silently ignored setting. Nearly everything is
//! an `Option` here: validation must tell "absent" (take the default) from
//! "present where it makes no sense" (a `token_url` on an API-key entry).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The top of the catalog file: `version` plus one table per provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    /// Format version; only `1` exists.
    pub version: u32,
    /// Entries by id.
    #[serde(default)]
    pub providers: BTreeMap<String, toml::Value>,
}

/// One provider entry as written (`[providers.<id>]`, or a custom provider's
/// JSON body).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Human name shown to users.
    pub display_name: Option<String>,
    /// How a connection is made; see [`RawAuthMode`].
    pub auth_mode: Option<RawAuthMode>,
    /// The provider's documentation the entry was written from.
    pub docs_url: Option<String>,

    /// OAuth 2.0 authorization endpoint (authorization code only); may hold
    /// `{input}` placeholders.
    pub authorization_url: Option<String>,
    /// OAuth 2.0 token endpoint; may hold `{input}` placeholders.
    pub token_url: Option<String>,
    /// Revocation endpoint, if the provider has one we can call.
    pub revocation_url: Option<String>,
    /// How the revocation endpoint takes the token.
    pub revocation_style: Option<RawRevocationStyle>,
    /// How the client id and secret reach the token endpoint.
    pub client_auth: Option<RawClientAuth>,
    /// Token request body encoding.
    pub token_request_format: Option<RawBodyFormat>,
    /// Extra headers on token (and revocation) requests.
    pub token_request_headers: Option<BTreeMap<String, String>>,
    /// Send `Accept: application/json` on token requests.
    pub accept_json: Option<bool>,
    /// Use PKCE (S256) in the authorization code flow.
    pub pkce: Option<bool>,
    /// What joins scopes in the authorization request (`" "`, `","`).
    pub scope_separator: Option<String>,
    /// The authorization parameter that carries the scopes (`scope`;
    /// Slack's user tokens: `user_scope`).
    pub scope_param: Option<String>,
    /// Scopes requested when the caller names none.
    pub default_scopes: Option<Vec<String>>,
    /// Extra query parameters on the authorization URL.
    pub authorization_params: Option<BTreeMap<String, String>>,
    /// Extra body parameters on every token request.
    pub token_params: Option<BTreeMap<String, String>>,
    /// The provider may answer an error with HTTP 200.
    pub errors_with_http_200: Option<bool>,
    /// Lifetime (seconds) to assume when a token response has no expiry.
    pub default_expires_in: Option<u64>,
    /// Where the fields sit in a token response.
    pub token_response: Option<RawTokenResponse>,
    /// Where they sit in a refresh response, when it is shaped differently.
    pub refresh_response: Option<RawTokenResponse>,

    /// Per-connection inputs by name, substituted into URL templates.
    pub inputs: Option<BTreeMap<String, RawInput>>,
    /// How the provider's API is called with the credential.
    pub api: Option<RawApi>,
}

/// The four ways a connection is made.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawAuthMode {
    /// OAuth 2.0 authorization code (with PKCE when the entry says so).
    Oauth2AuthorizationCode,
    /// OAuth 2.0 client credentials: no user, no browser.
    Oauth2ClientCredentials,
    /// An API key stored and injected; no flow.
    ApiKey,
    /// A username and password stored and injected; no flow.
    Basic,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)`.
    Basic,
    /// `client_id` and `client_secret` in the request body.
    Body,
}

/// A request body encoding.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawBodyFormat {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
}

/// How a token response body is read.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawResponseFormat {
    /// By the answer's content type, trying JSON and then form encoding.
    Auto,
    /// Always JSON.
    Json,
    /// Always form encoded.
    Form,
}

/// How a revocation endpoint takes the token.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawRevocationStyle {
    /// RFC 7009: `token` (+ `token_type_hint`) in the body, client
    /// authentication as at the token endpoint.
    Rfc7009,
    /// The access token itself as `Authorization: Bearer`, no body.
    Bearer,
}

/// Paths of the token fields in a token response.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTokenResponse {
    /// Body encoding; `auto` by default.
    pub format: Option<RawResponseFormat>,
    /// Dotted path of the access token (`authed_user.access_token`).
    pub access_token: Option<String>,
    /// Dotted path of the refresh token.
    pub refresh_token: Option<String>,
    /// Dotted path of the lifetime in seconds.
    pub expires_in: Option<String>,
    /// Dotted path of the granted scopes.
    pub scope: Option<String>,
    /// What separates granted scopes, when it differs from the request's.
    pub scope_separator: Option<String>,
    /// Metadata to keep: name → dotted path.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A per-connection input (`tenant`, `instance`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// What the user should enter.
    pub description: Option<String>,
    /// The whole value must match this (see `pattern.rs` for the grammar).
    pub pattern: Option<String>,
    /// A value matching the pattern: documents the input, and is what URL
    /// templates are checked with at load.
    pub example: Option<String>,
    /// Used when the connection gives no value; absent → required.
    pub default: Option<String>,
}

/// How the provider's API is called.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Base URL of the API; may hold `{input}` placeholders.
    pub base_url: Option<String>,
    /// Headers sent on every API call (`Notion-Version`).
    pub headers: Option<BTreeMap<String, String>>,
    /// Where the credential goes; a bearer header by default.
    pub credential: Option<RawCredential>,
}

/// Where the credential goes on an API call.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    /// `bearer`, `header`, `query` or `basic`.
    pub location: Option<RawCredentialLocation>,
    /// Header or query parameter name (`header`, `query`).
    pub name: Option<String>,
    /// Text before the credential in the header (`header`; `"Token "`).
    pub prefix: Option<String>,
}

/// The credential locations.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawCredentialLocation {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A named header, with an optional prefix.
    Header,
    /// A named query parameter.
    Query,
    /// `Authorization: Basic` (username and password; an API key as the
    /// username with an empty password).
    Basic,
}
