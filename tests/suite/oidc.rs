//! The real OIDC issuer for JWT tests: `oidc-provider` running
//! `tests/tools/oidc/server.mjs` (see the top of that file for its clients,
//! claims and test-only routes). It is started once per test process, on a
//! free loopback port, and exits when this process does (it watches its
//! stdin, which only this process holds). Needs `node` and
//! `tests/tools/node_modules` (`make tools`).

use std::sync::OnceLock;

use locksmith_edge::auth::jwt::OidcIssuer;
use serde_json::{Value, json};

use crate::node_server::NodeServer;

/// The running issuer.
pub struct Oidc {
    /// Its issuer identifier (`iss` of every token it issues).
    pub issuer: String,
    /// Its JWKS, as published in its discovery document.
    pub jwks_uri: String,
    pub token_endpoint: String,
    /// The one resource indicator it issues JWT access tokens for.
    pub resource: String,
    /// Every client's secret.
    client_secret: String,
    /// The process; it exits with this one.
    _server: NodeServer,
}

/// The server, started on first use.
pub fn oidc() -> &'static Oidc {
    static OIDC: OnceLock<Oidc> = OnceLock::new();
    OIDC.get_or_init(start)
}

fn start() -> Oidc {
    let server = NodeServer::start("oidc/server.mjs", "oidc");
    Oidc {
        issuer: server.field("issuer"),
        jwks_uri: server.field("jwks_uri"),
        token_endpoint: server.field("token_endpoint"),
        resource: server.field("resource"),
        client_secret: server.field("client_secret"),
        _server: server,
    }
}

/// The issuer's public signing key.
pub struct PublicKey {
    pub kid: String,
    /// SPKI PEM text.
    pub pem: String,
    /// The public JWK as the JWKS publishes it.
    pub jwk: Value,
}

impl Oidc {
    /// A fresh client per call: each test has its own tokio runtime, and a
    /// pooled connection must not outlive the runtime that opened it.
    fn http() -> reqwest::Client {
        reqwest::Client::new()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// This issuer as the edge would configure it: its JWKS, audience
    /// [`Oidc::resource`], every other field at its default. `probe` tags the
    /// JWKS URL so [`Oidc::jwks_fetches`] counts this verifier's fetches only.
    pub fn issuer_config(&self, probe: &str) -> OidcIssuer {
        OidcIssuer::new(
            self.issuer.clone(),
            format!("{}?probe={probe}", self.jwks_uri),
            vec![self.resource.clone()],
        )
    }

    /// An access token from a real client-credentials grant for `client`
    /// (a client id from the table in `server.mjs`, e.g. `tenant-acme-admin`)
    /// and `resource`. Panics unless the issuer grants one.
    pub async fn client_credentials_token(&self, client: &str, resource: &str) -> String {
        match self.try_client_credentials(client, resource).await {
            Ok(token) => token,
            Err((status, body)) => panic!("token request for {client} answered {status}: {body}"),
        }
    }

    /// The token endpoint's answer: the access token, or status and body.
    pub async fn try_client_credentials(
        &self,
        client: &str,
        resource: &str,
    ) -> Result<String, (u16, Value)> {
        let resp = Self::http()
            .post(&self.token_endpoint)
            .basic_auth(client, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .expect("reach the token endpoint");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("token endpoint answers JSON");
        if status != 200 {
            return Err((status, body));
        }
        Ok(body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned())
    }

    /// `claims` signed as given by the issuer's own key (RS256). `header`
    /// fields replace the defaults `{"alg":"RS256","typ":"JWT","kid":<kid>}`
    /// (null removes one); the signature stays RS256 whatever `alg` says.
    pub async fn sign(&self, claims: Value, header: Value) -> String {
        let resp = Self::http()
            .post(self.url("/test/sign"))
            .json(&json!({ "claims": claims, "header": header }))
            .send()
            .await
            .expect("reach /test/sign");
        assert_eq!(resp.status().as_u16(), 200, "/test/sign refused");
        let body: Value = resp.json().await.expect("/test/sign answers JSON");
        body["token"].as_str().expect("a token").to_owned()
    }

    pub async fn public_key(&self) -> PublicKey {
        let body: Value = Self::http()
            .get(self.url("/test/public-key"))
            .send()
            .await
            .expect("reach /test/public-key")
            .json()
            .await
            .expect("/test/public-key answers JSON");
        PublicKey {
            kid: body["kid"].as_str().expect("kid").to_owned(),
            pem: body["pem"].as_str().expect("pem").to_owned(),
            jwk: body["jwk"].clone(),
        }
    }

    /// How many times the JWKS was fetched with `?probe=<probe>`.
    pub async fn jwks_fetches(&self, probe: &str) -> u64 {
        let body: Value = Self::http()
            .get(self.url("/test/jwks-fetches"))
            .query(&[("probe", probe)])
            .send()
            .await
            .expect("reach /test/jwks-fetches")
            .json()
            .await
            .expect("/test/jwks-fetches answers JSON");
        body["count"].as_u64().expect("a count")
    }
}
