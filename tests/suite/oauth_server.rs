//! The real OAuth 2.0 authorization server for the OAuth broker's tests:
//! `oidc-provider` running `tests/tools/oidc/oauth-server.mjs` (see the top of
//! that file for what it enforces and its test-only routes): authorization code
//! with PKCE required (S256), refresh tokens rotated on every use (reusing a
//! rotated one revokes the grant), revocation, client credentials. Started
//! once per test process on a free loopback port; it exits when this process
//! does (it watches its stdin, which only this process holds). Needs `node`
//! and `tests/tools/node_modules` (`make tools`).
//!
//! Each test registers its own client ([`OAuthServer::register_client`]), so
//! counters ([`OAuthServer::token_requests`]) and grants never mix between
//! tests running in parallel. [`OAuthServer::authorize`] drives the login and
//! consent pages headlessly and stops at the redirect to the client's
//! `redirect_uri` (nothing needs to listen there).

mod driver;

pub use driver::{Callback, Decision, DriverError, ProviderError};

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use base64::Engine as _;
use reqwest::Url;
use serde_json::{Value, json};

use crate::node_server::NodeServer;

/// Most redirects and form posts one authorization may take.
const MAX_STEPS: usize = 20;

/// The running server.
pub struct OAuthServer {
    /// Its issuer identifier (also the `iss` on authorization responses).
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// RFC 7009.
    pub revocation_endpoint: String,
    /// RFC 7662.
    pub introspection_endpoint: String,
    /// `GET` with `Authorization: Bearer <access token>`: 200 for a live
    /// token, 401 otherwise (a stand-in for a provider's API).
    pub resource_endpoint: String,
    /// The process; it exits with this one.
    server: NodeServer,
}

/// The server, started on first use.
pub fn oauth_server() -> &'static OAuthServer {
    static SERVER: OnceLock<OAuthServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> OAuthServer {
    let server = NodeServer::start("oidc/oauth-server.mjs", "oauth-server");
    OAuthServer {
        issuer: server.field("issuer"),
        authorization_endpoint: server.field("authorization_endpoint"),
        token_endpoint: server.field("token_endpoint"),
        revocation_endpoint: server.field("revocation_endpoint"),
        introspection_endpoint: server.field("introspection_endpoint"),
        resource_endpoint: server.field("resource_endpoint"),
        server,
    }
}

/// How a client authenticates at the token and revocation endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

impl ClientAuth {
    pub fn method(self) -> &'static str {
        match self {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::Post => "client_secret_post",
        }
    }
}

/// A client to register. Start from [`ClientSpec::code_flow`] or
/// [`ClientSpec::client_credentials`] and change the public fields.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub auth: ClientAuth,
    /// Scopes it may get; `None`: every scope the server offers.
    pub scope: Option<String>,
    /// Access-token lifetime in seconds; `None`: the server default (300).
    pub access_token_ttl: Option<u64>,
    /// Refresh-token lifetime in seconds; `None`: 14 days.
    pub refresh_token_ttl: Option<u64>,
}

impl ClientSpec {
    /// Authorization code + refresh token, HTTP Basic, one redirect URI.
    pub fn code_flow(redirect_uri: &str) -> Self {
        ClientSpec {
            redirect_uris: vec![redirect_uri.to_owned()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            auth: ClientAuth::Basic,
            scope: None,
            access_token_ttl: None,
            refresh_token_ttl: None,
        }
    }

    /// Client credentials only, HTTP Basic.
    pub fn client_credentials() -> Self {
        ClientSpec {
            redirect_uris: Vec::new(),
            grant_types: vec!["client_credentials".into()],
            ..ClientSpec::code_flow("")
        }
    }
}

/// A registered client.
#[derive(Clone, Debug)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub auth: ClientAuth,
}

/// Token-endpoint requests naming one client, as the server counted them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRequests {
    /// Every request that arrived.
    pub count: u64,
    /// Answered 200.
    pub success: u64,
    /// Answered anything else.
    pub error: u64,
    /// Dropped unanswered ([`OnDisconnect::Drop`]).
    pub aborted: u64,
    /// Arrivals by the `grant_type` sent ("" when none).
    pub by_grant: BTreeMap<String, u64>,
}

/// Revocation-endpoint requests naming one client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationRequests {
    pub count: u64,
    pub success: u64,
    pub error: u64,
}

/// What the token endpoint does with a delayed request whose caller hung up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDisconnect {
    /// Handle it anyway (a refresh token is consumed though the answer is lost).
    Process,
    /// Never handle it (counted as aborted).
    Drop,
}

/// Changes to how the token endpoint treats one client's later requests
/// (`None` keeps the current value).
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    pub token_delay: Option<Duration>,
    pub on_disconnect: Option<OnDisconnect>,
    /// The next N requests answer `fail_status` without reaching oidc-provider.
    pub fail_next: Option<u32>,
    /// Default 503.
    pub fail_status: Option<u16>,
}

/// The token endpoint's answer.
#[derive(Clone, Debug)]
pub struct TokenResponse {
    pub status: u16,
    pub body: Value,
}

impl TokenResponse {
    /// A string field of the body, panicking with the whole answer if absent.
    pub fn field(&self, name: &str) -> String {
        self.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("token response lacks {name}: {} {}", self.status, self.body))
            .to_owned()
    }
}

/// A PKCE pair (RFC 7636): a fresh 64-character verifier and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
    (verifier, challenge)
}

/// SHA-256 through rustls's ring provider (already in the suite's dependencies).
fn sha256(data: &[u8]) -> Vec<u8> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite");
    suite.common.hash_provider.hash(data).as_ref().to_vec()
}

impl OAuthServer {
    /// A fresh client per call: each test has its own tokio runtime, and a
    /// pooled connection must not outlive the runtime that opened it.
    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The server's stderr so far (oidc-provider's notices and `grant.error`
    /// lines with the real reason of each refused grant).
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Registers a client through `POST /test/clients`.
    pub async fn register_client(&self, spec: &ClientSpec) -> RegisteredClient {
        let mut body = json!({
            "redirect_uris": spec.redirect_uris,
            "grant_types": spec.grant_types,
            "token_endpoint_auth_method": spec.auth.method(),
        });
        if let Some(scope) = &spec.scope {
            body["scope"] = json!(scope);
        }
        if let Some(ttl) = spec.access_token_ttl {
            body["access_token_ttl"] = json!(ttl);
        }
        if let Some(ttl) = spec.refresh_token_ttl {
            body["refresh_token_ttl"] = json!(ttl);
        }
        let resp = Self::http()
            .post(self.url("/test/clients"))
            .json(&body)
            .send()
            .await
            .expect("reach /test/clients");
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.expect("/test/clients answers JSON");
        assert_eq!(status, 201, "client registration refused: {answer}");
        RegisteredClient {
            client_id: answer["client_id"].as_str().expect("client_id").to_owned(),
            client_secret: answer["client_secret"]
                .as_str()
                .expect("client_secret")
                .to_owned(),
            redirect_uris: spec.redirect_uris.clone(),
            auth: spec.auth,
        }
    }

    /// Token-endpoint requests naming `client_id` so far.
    pub async fn token_requests(&self, client_id: &str) -> TokenRequests {
        let body = self.get_json("/test/token-requests", client_id).await;
        let number = |name: &str| {
            body[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} in {body}"))
        };
        TokenRequests {
            count: number("count"),
            success: number("success"),
            error: number("error"),
            aborted: number("aborted"),
            by_grant: body["by_grant"]
                .as_object()
                .expect("by_grant")
                .iter()
                .map(|(grant, n)| (grant.clone(), n.as_u64().expect("a count")))
                .collect(),
        }
    }

    /// Revocation-endpoint requests naming `client_id` so far.
    pub async fn revocation_requests(&self, client_id: &str) -> RevocationRequests {
        let body = self.get_json("/test/revocation-requests", client_id).await;
        let number = |name: &str| {
            body[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} in {body}"))
        };
        RevocationRequests {
            count: number("count"),
            success: number("success"),
            error: number("error"),
        }
    }

    async fn get_json(&self, path: &str, client_id: &str) -> Value {
        Self::http()
            .get(self.url(path))
            .query(&[("client_id", client_id)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("reach {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path} answers JSON: {e}"))
    }

    /// Changes how the token endpoint treats `client_id`'s later requests.
    pub async fn set_behaviour(&self, client_id: &str, behaviour: &Behaviour) {
        let mut body = json!({});
        if let Some(delay) = behaviour.token_delay {
            body["token_delay_ms"] = json!(delay.as_millis() as u64);
        }
        if let Some(mode) = behaviour.on_disconnect {
            body["on_disconnect"] = json!(match mode {
                OnDisconnect::Process => "process",
                OnDisconnect::Drop => "drop",
            });
        }
        if let Some(n) = behaviour.fail_next {
            body["fail_next"] = json!(n);
        }
        if let Some(status) = behaviour.fail_status {
            body["fail_status"] = json!(status);
        }
        let resp = Self::http()
            .post(self.url(&format!("/test/clients/{client_id}/behaviour")))
            .json(&body)
            .send()
            .await
            .expect("reach /test/clients/{id}/behaviour");
        assert_eq!(resp.status().as_u16(), 200, "behaviour refused");
    }

    /// An authorization request URL for `client` (its first redirect URI),
    /// `response_type=code`, with `code_challenge` + `S256` when given.
    pub fn authorization_url(
        &self,
        client: &RegisteredClient,
        scope: &str,
        state: &str,
        code_challenge: Option<&str>,
    ) -> String {
        let mut url = Url::parse(&self.authorization_endpoint).expect("authorization endpoint");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", &client.redirect_uris[0])
                .append_pair("scope", scope)
                .append_pair("state", state);
            if let Some(challenge) = code_challenge {
                query
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url.into()
    }

    /// A POST to the token endpoint with `client`'s credentials (Basic or in
    /// the body, as registered) and `form`.
    pub async fn token_request(
        &self,
        client: &RegisteredClient,
        form: &[(&str, &str)],
    ) -> TokenResponse {
        let resp = client
            .authenticate(Self::http().post(&self.token_endpoint), form)
            .send()
            .await
            .expect("reach the token endpoint");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("the token endpoint answers JSON");
        TokenResponse { status, body }
    }

    /// Exchanges an authorization code (with the client's first redirect URI).
    pub async fn exchange_code(
        &self,
        client: &RegisteredClient,
        code: &str,
        verifier: Option<&str>,
    ) -> TokenResponse {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", client.redirect_uris[0].as_str()),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier));
        }
        self.token_request(client, &form).await
    }

    pub async fn refresh(&self, client: &RegisteredClient, refresh_token: &str) -> TokenResponse {
        self.token_request(
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// RFC 7009 revocation; returns the HTTP status (200 whatever the token).
    pub async fn revoke(&self, client: &RegisteredClient, token: &str, hint: Option<&str>) -> u16 {
        let mut form = vec![("token", token)];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint));
        }
        client
            .authenticate(Self::http().post(&self.revocation_endpoint), &form)
            .send()
            .await
            .expect("reach the revocation endpoint")
            .status()
            .as_u16()
    }

    /// RFC 7662 introspection of `token` by `client`: the JSON answer.
    pub async fn introspect(&self, client: &RegisteredClient, token: &str) -> Value {
        let resp = client
            .authenticate(
                Self::http().post(&self.introspection_endpoint),
                &[("token", token)],
            )
            .send()
            .await
            .expect("reach the introspection endpoint");
        assert_eq!(resp.status().as_u16(), 200, "introspection refused");
        resp.json().await.expect("introspection answers JSON")
    }

    /// `GET /test/resource` with the access token: status and body.
    pub async fn resource(&self, access_token: &str) -> (u16, Value) {
        let resp = Self::http()
            .get(&self.resource_endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .expect("reach /test/resource");
        let status = resp.status().as_u16();
        (
            status,
            resp.json().await.expect("/test/resource answers JSON"),
        )
    }
}

impl RegisteredClient {
    /// Adds this client's credentials to a token or revocation request with `form`.
    fn authenticate(
        &self,
        request: reqwest::RequestBuilder,
        form: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        match self.auth {
            ClientAuth::Basic => request
                .basic_auth(
                    form_encode(&self.client_id),
                    Some(form_encode(&self.client_secret)),
                )
                .form(form),
            ClientAuth::Post => {
                let mut all = form.to_vec();
                all.push(("client_id", &self.client_id));
                all.push(("client_secret", &self.client_secret));
                request.form(&all)
            }
        }
    }
}

/// RFC 6749 §2.3.1: Basic credentials are `application/x-www-form-urlencoded`
/// first (a no-op for the server's hex ids and secrets, kept for correctness).
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
