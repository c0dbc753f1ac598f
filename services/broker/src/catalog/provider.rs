//! The validated form of a catalog entry: what the flows and the token proxy
//! read. Built only by `validate.rs`, so every value here has been checked
//! (https URLs, declared inputs, safe patterns, well-formed headers).

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderMap;
use locksmith_domain::IntegrationId;
use reqwest::Url;

use super::path::FieldPath;
use super::template::{ConnectionInputs, InputError, InputSpec, UrlTemplate, resolve_inputs};

/// How connections to a provider are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// OAuth 2.0 authorization code, with PKCE (S256) when the entry says so.
    OAuth2AuthorizationCode,
    /// OAuth 2.0 client credentials: the app's own token, no user.
    OAuth2ClientCredentials,
    /// An API key the caller stores; injected by the proxy, no flow.
    ApiKey,
    /// A username and password the caller stores; injected, no flow.
    Basic,
}

impl AuthMode {
    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth2AuthorizationCode => "oauth2_authorization_code",
            Self::OAuth2ClientCredentials => "oauth2_client_credentials",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
        }
    }

    /// Whether the broker runs an OAuth 2.0 flow for it.
    pub fn is_oauth2(self) -> bool {
        matches!(
            self,
            Self::OAuth2AuthorizationCode | Self::OAuth2ClientCredentials
        )
    }
}

/// How the client id and secret reach the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// In the request body (`client_secret_post`).
    Body,
}

/// Token (and RFC 7009 revocation) request body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    Form,
    /// `application/json` (Notion, Atlassian).
    Json,
}

/// How a token response body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// By content type; unknown types are tried as JSON, then as a form.
    Auto,
    /// Always JSON.
    Json,
    /// Always `application/x-www-form-urlencoded`.
    Form,
}

/// How the revocation endpoint takes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStyle {
    /// RFC 7009: `token` and `token_type_hint` in a body encoded per the
    /// entry's [`BodyFormat`], client authentication per its [`ClientAuth`].
    Rfc7009,
    /// The access token as `Authorization: Bearer`, empty body (Dropbox's
    /// `/2/auth/token/revoke`, Slack's `auth.revoke`).
    Bearer,
}

/// A revocation endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub(crate) url: UrlTemplate,
    pub(crate) style: RevocationStyle,
}

impl Revocation {
    /// The endpoint template.
    pub fn url(&self) -> &UrlTemplate {
        &self.url
    }
    /// How it takes the token.
    pub fn style(&self) -> RevocationStyle {
        self.style
    }
}

/// Where the token fields sit in a token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponseSpec {
    pub(crate) format: ResponseFormat,
    pub(crate) access_token: FieldPath,
    pub(crate) refresh_token: FieldPath,
    pub(crate) expires_in: FieldPath,
    pub(crate) scope: FieldPath,
    pub(crate) scope_separator: String,
    pub(crate) metadata: BTreeMap<String, FieldPath>,
}

impl TokenResponseSpec {
    /// How the body is read.
    pub fn format(&self) -> ResponseFormat {
        self.format
    }
    /// Path of the access token.
    pub fn access_token(&self) -> &FieldPath {
        &self.access_token
    }
    /// Path of the refresh token.
    pub fn refresh_token(&self) -> &FieldPath {
        &self.refresh_token
    }
    /// Path of the lifetime in seconds.
    pub fn expires_in(&self) -> &FieldPath {
        &self.expires_in
    }
    /// Path of the granted scopes.
    pub fn scope(&self) -> &FieldPath {
        &self.scope
    }
    /// What separates granted scopes in a string.
    pub fn scope_separator(&self) -> &str {
        &self.scope_separator
    }
    /// Metadata kept with the connection: name → path.
    pub fn metadata(&self) -> &BTreeMap<String, FieldPath> {
        &self.metadata
    }
}

/// The OAuth 2.0 part of an entry.
#[derive(Debug, Clone)]
pub struct OAuth2Spec {
    pub(crate) authorization_url: Option<UrlTemplate>,
    pub(crate) token_url: UrlTemplate,
    pub(crate) revocation: Option<Revocation>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) token_request_format: BodyFormat,
    pub(crate) token_request_headers: HeaderMap,
    pub(crate) accept_json: bool,
    pub(crate) pkce: bool,
    pub(crate) scope_separator: String,
    pub(crate) scope_param: String,
    pub(crate) default_scopes: Vec<String>,
    pub(crate) authorization_params: BTreeMap<String, String>,
    pub(crate) token_params: BTreeMap<String, String>,
    pub(crate) errors_with_http_200: bool,
    pub(crate) default_expires_in: Option<Duration>,
    pub(crate) token_response: TokenResponseSpec,
    pub(crate) refresh_response: Option<TokenResponseSpec>,
}

impl OAuth2Spec {
    /// Authorization endpoint template (authorization code only).
    pub fn authorization_url(&self) -> Option<&UrlTemplate> {
        self.authorization_url.as_ref()
    }
    /// Token endpoint template.
    pub fn token_url(&self) -> &UrlTemplate {
        &self.token_url
    }
    /// Revocation endpoint, when the provider has one we can call.
    pub fn revocation(&self) -> Option<&Revocation> {
        self.revocation.as_ref()
    }
    /// How the client authenticates at the token endpoint.
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }
    /// Token request body encoding.
    pub fn token_request_format(&self) -> BodyFormat {
        self.token_request_format
    }
    /// Extra headers for token and revocation requests.
    pub fn token_request_headers(&self) -> &HeaderMap {
        &self.token_request_headers
    }
    /// Send `Accept: application/json` with token requests: without it
    /// GitHub answers form-encoded.
    pub fn accept_json(&self) -> bool {
        self.accept_json
    }
    /// Use PKCE with S256 (the only method we send).
    pub fn pkce(&self) -> bool {
        self.pkce
    }
    /// What joins requested scopes.
    pub fn scope_separator(&self) -> &str {
        &self.scope_separator
    }
    /// The authorization parameter that carries the scopes.
    pub fn scope_param(&self) -> &str {
        &self.scope_param
    }
    /// Scopes requested when the caller names none.
    pub fn default_scopes(&self) -> &[String] {
        &self.default_scopes
    }
    /// Extra authorization URL parameters.
    pub fn authorization_params(&self) -> &BTreeMap<String, String> {
        &self.authorization_params
    }
    /// Extra parameters on every token request.
    pub fn token_params(&self) -> &BTreeMap<String, String> {
        &self.token_params
    }
    /// The provider may report errors with HTTP 200, so a 200 is not a
    /// success until the body has been read ([`super::response`] always
    /// checks; this tells the flows not to short-circuit on the status).
    pub fn errors_with_http_200(&self) -> bool {
        self.errors_with_http_200
    }
    /// Lifetime assumed when a token response carries none.
    pub fn default_expires_in(&self) -> Option<Duration> {
        self.default_expires_in
    }
    /// Token response shape for the authorization code and client
    /// credentials grants.
    pub fn token_response(&self) -> &TokenResponseSpec {
        &self.token_response
    }
    /// Token response shape for the refresh grant.
    pub fn refresh_response(&self) -> &TokenResponseSpec {
        self.refresh_response
            .as_ref()
            .unwrap_or(&self.token_response)
    }
}

/// Where the credential goes on an API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialPlacement {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `<name>: <prefix><token>` (`x-api-key`, or `Authorization: Token …`).
    Header {
        /// Header name, lowercase.
        name: http::HeaderName,
        /// Text before the credential; may be empty.
        prefix: String,
    },
    /// `?<name>=<token>`.
    Query {
        /// Parameter name.
        name: String,
    },
    /// `Authorization: Basic` from a username and password (an API key as
    /// the username with an empty password).
    Basic,
}

/// How the provider's API is called.
#[derive(Debug, Clone)]
pub struct ApiSpec {
    pub(crate) base_url: UrlTemplate,
    pub(crate) headers: HeaderMap,
    pub(crate) credential: CredentialPlacement,
}

impl ApiSpec {
    /// Base URL template.
    pub fn base_url(&self) -> &UrlTemplate {
        &self.base_url
    }
    /// Headers sent on every call (`Notion-Version`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// Where the credential goes.
    pub fn credential(&self) -> &CredentialPlacement {
        &self.credential
    }
}

/// A validated catalog entry (or tenant custom provider).
#[derive(Debug, Clone)]
pub struct Provider {
    pub(crate) id: IntegrationId,
    pub(crate) display_name: String,
    pub(crate) docs_url: Option<Url>,
    pub(crate) auth_mode: AuthMode,
    pub(crate) oauth2: Option<OAuth2Spec>,
    pub(crate) inputs: BTreeMap<String, InputSpec>,
    pub(crate) api: Option<ApiSpec>,
}

/// Why an endpoint could not be produced for a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The provider has no OAuth 2.0 flow (or not this part of it).
    #[error("{integration} ({mode}) has no {what}")]
    NotApplicable {
        /// The entry.
        integration: String,
        /// Its auth mode.
        mode: &'static str,
        /// What was asked for.
        what: &'static str,
    },
    /// An input was refused.
    #[error(transparent)]
    Input(#[from] InputError),
    /// PKCE is on but no challenge was given.
    #[error("{0} requires PKCE: a code challenge must be sent")]
    MissingPkceChallenge(String),
}

/// What the flow supplies to build an authorization URL.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationRequest<'a> {
    /// The OAuth app's client id.
    pub client_id: &'a str,
    /// Our callback URL, as registered with the provider.
    pub redirect_uri: &'a str,
    /// The opaque `state`.
    pub state: &'a str,
    /// Scopes to request; `None` → the entry's default scopes.
    pub scopes: Option<&'a [String]>,
    /// `BASE64URL(SHA256(verifier))`, required when the entry uses PKCE.
    pub code_challenge: Option<&'a str>,
}

impl Provider {
    /// The entry's id.
    pub fn id(&self) -> &IntegrationId {
        &self.id
    }
    /// Human name.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }
    /// The documentation the entry was written from.
    pub fn docs_url(&self) -> Option<&Url> {
        self.docs_url.as_ref()
    }
    /// How connections are made.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth_mode
    }
    /// The OAuth 2.0 settings (OAuth modes only).
    pub fn oauth2(&self) -> Option<&OAuth2Spec> {
        self.oauth2.as_ref()
    }
    /// Declared per-connection inputs by name.
    pub fn inputs(&self) -> &BTreeMap<String, InputSpec> {
        &self.inputs
    }
    /// How the API is called, if the entry says.
    pub fn api(&self) -> Option<&ApiSpec> {
        self.api.as_ref()
    }

    /// Checks a connection's inputs: no unknown names, required ones given,
    /// every value matching its pattern; defaults filled in.
    pub fn resolve_inputs(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<ConnectionInputs, InputError> {
        resolve_inputs(&self.inputs, given)
    }

    fn not_applicable(&self, what: &'static str) -> EndpointError {
        EndpointError::NotApplicable {
            integration: self.id.to_string(),
            mode: self.auth_mode.as_str(),
            what,
        }
    }

    fn oauth2_or(&self, what: &'static str) -> Result<&OAuth2Spec, EndpointError> {
        self.oauth2
            .as_ref()
            .ok_or_else(|| self.not_applicable(what))
    }

    /// The authorization endpoint for a connection, without query
    /// parameters (see [`Self::authorization_request_url`]).
    pub fn authorization_url(&self, inputs: &ConnectionInputs) -> Result<Url, EndpointError> {
        let template = self
            .oauth2_or("authorization endpoint")?
            .authorization_url
            .as_ref()
            .ok_or_else(|| self.not_applicable("authorization endpoint"))?;
        Ok(template.substitute(&self.inputs, inputs)?)
    }

    /// The full URL to send the user to: `response_type=code`, client id,
    /// redirect URI, state, scopes under the entry's parameter name joined by
    /// its separator, the PKCE challenge (S256) when the entry uses PKCE, and
    /// the entry's extra parameters.
    pub fn authorization_request_url(
        &self,
        inputs: &ConnectionInputs,
        request: &AuthorizationRequest<'_>,
    ) -> Result<Url, EndpointError> {
        let oauth2 = self.oauth2_or("authorization endpoint")?;
        let mut url = self.authorization_url(inputs)?;
        let scopes = request.scopes.unwrap_or(&oauth2.default_scopes);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", request.client_id)
                .append_pair("redirect_uri", request.redirect_uri)
                .append_pair("state", request.state);
            if !scopes.is_empty() {
                q.append_pair(&oauth2.scope_param, &scopes.join(&oauth2.scope_separator));
            }
            if oauth2.pkce {
                let challenge = request
                    .code_challenge
                    .ok_or_else(|| EndpointError::MissingPkceChallenge(self.id.to_string()))?;
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
            for (k, v) in &oauth2.authorization_params {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The token endpoint for a connection.
    pub fn token_url(&self, inputs: &ConnectionInputs) -> Result<Url, EndpointError> {
        let oauth2 = self.oauth2_or("token endpoint")?;
        Ok(oauth2.token_url.substitute(&self.inputs, inputs)?)
    }

    /// The revocation endpoint and its style, if the provider has one.
    pub fn revocation_url(
        &self,
        inputs: &ConnectionInputs,
    ) -> Result<Option<(Url, RevocationStyle)>, EndpointError> {
        let Some(oauth2) = &self.oauth2 else {
            return Ok(None);
        };
        let Some(revocation) = &oauth2.revocation else {
            return Ok(None);
        };
        let url = revocation.url.substitute(&self.inputs, inputs)?;
        Ok(Some((url, revocation.style)))
    }

    /// The API base URL for a connection.
    pub fn api_base_url(&self, inputs: &ConnectionInputs) -> Result<Url, EndpointError> {
        let api = self
            .api
            .as_ref()
            .ok_or_else(|| self.not_applicable("API base URL"))?;
        Ok(api.base_url.substitute(&self.inputs, inputs)?)
    }
}
