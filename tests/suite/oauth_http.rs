//! OAuth flows over the edge's HTTP routes, end to end: authorize with a
//! tenant key, the real OAuth server driven headlessly (`oauth_server.rs`),
//! the provider's redirect URL fetched from the edge exactly as sent, and
//! the connection listed as metadata, no token value in any answer. Also the
//! callback's refusals: another tenant's state, an unknown one, a replay;
//! a flow the user denies (or whose code the provider refuses) going back to
//! its return URL with `error=<code>`; tenants' custom providers and
//! connections of orgs, bots and users (`oauth_http/scopes.rs`).
//!
//! The catalog admits https endpoints only, so the plain-HTTP OAuth server
//! is reached through a TLS front whose CA the broker's egress guard trusts;
//! loopback is allow-listed, as the issue says the tests need.

use locksmith_egress::EgressPolicy;
use locksmith_proto::broker::v1::{
    self as pb, o_auth_broker_service_client::OAuthBrokerServiceClient,
};
use locksmith_tls::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::broker_flows::tls_front;
use crate::harness::{BrokerSetup, Suite, assert_problem, create_tenant, load_tls};
use crate::oauth_server::{ClientSpec, Decision, oauth_server};

mod scopes;

/// The suite with a broker whose catalog has one `oidc` entry (the real
/// OAuth server behind a TLS front), the system OAuth app registered for
/// the edge's redirect URI, tenants `acme` (whose flows may return to
/// `https://app.acme.example/done`) and `beta`. Answers the front's port.
async fn oidc_suite(dir: &TempDir) -> (Suite, u16) {
    let server = oauth_server();
    let issuer = reqwest::Url::parse(&server.issuer).unwrap();
    let upstream = format!("{}:{}", issuer.host_str().unwrap(), issuer.port().unwrap())
        .parse()
        .unwrap();
    let (port, ca) = tls_front(upstream, dir).await;
    let catalog = format!(
        r#"
version = 1
[providers.oidc]
display_name = "Test OAuth server"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://localhost:{port}/auth"
token_url = "https://localhost:{port}/token"
revocation_url = "https://localhost:{port}/token/revocation"
client_auth = "basic"
pkce = true
default_scopes = ["read", "write"]
[providers.oidc.api]
base_url = "https://localhost:{port}"
"#
    );
    let suite = Suite::start_with_broker(BrokerSetup {
        catalog: Some(catalog),
        egress: Some(EgressPolicy {
            allow_cidrs: vec!["127.0.0.0/8".into()],
            ca_files: vec![ca],
            ..EgressPolicy::default()
        }),
        return_urls: [(
            "acme".to_owned(),
            vec!["https://app.acme.example/done".to_owned()],
        )]
        .into(),
    })
    .await;
    let client = server
        .register_client(&ClientSpec::code_flow(&suite.url("/oauth/callback/oidc")))
        .await;
    let (status, body) = suite
        .call(
            Method::PUT,
            "/system/secrets/oauth-apps/oidc",
            Some(json!({"fields": {"client-id": client.client_id, "client-secret": client.client_secret}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    create_tenant(&suite, "acme").await;
    create_tenant(&suite, "beta").await;
    (suite, port)
}

/// The browser's part: the provider's pages, on the server's own address.
/// Answers the redirect URL the provider sent the browser to.
pub(crate) async fn approve(authorization_url: &str, front_port: u16) -> String {
    let server = oauth_server();
    let url = authorization_url.replace(&format!("https://localhost:{front_port}"), &server.issuer);
    let decision = Decision::Approve {
        login: "alice".into(),
    };
    server.authorize_as(&url, &decision).await.unwrap().location
}

/// A client that does not follow redirects, sending `key` if any.
pub(crate) fn browser(key: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(key) = key {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        builder = builder.default_headers(headers);
    }
    builder.build().unwrap()
}

/// GET `url` (absolute) through `client`: status, Location, body text.
pub(crate) async fn fetch(client: &reqwest::Client, url: &str) -> (u16, Option<String>, String) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, resp.text().await.unwrap())
}

/// The access token the broker holds for `name`, as the token proxy reads it.
async fn access_token(suite: &Suite, name: &str) -> String {
    let channel = tonic::transport::Endpoint::from_shared(suite.broker.url.clone())
        .unwrap()
        .tls_config(load_tls(suite.pki.path(), ServiceName::Proxy).client_tls("localhost"))
        .unwrap()
        .connect_lazy();
    OAuthBrokerServiceClient::new(channel)
        .get_access_token(pb::GetAccessTokenRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .credential
}

#[tokio::test]
async fn a_flow_over_http_lists_a_connection_and_never_answers_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, port) = oidc_suite(&dir).await;
    let key = suite.tenant_key("acme", &["write"]).await;
    let acme = suite.client_as(&key);
    let mut answers: Vec<String> = Vec::new();

    let (status, started) = suite
        .call_with(
            &acme,
            Method::POST,
            "/oauth/authorize/oidc",
            Some(json!({"tenant_id": "acme"})),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["state"].as_str().unwrap().len(), 43);
    assert!(started["expires_at"].is_string(), "{started}");
    answers.push(started.to_string());
    let redirect = approve(started["authorization_url"].as_str().unwrap(), port).await;
    assert!(
        redirect.starts_with(&suite.url("/oauth/callback/oidc?")),
        "{redirect}"
    );

    // The provider's redirect, exactly as sent (with `iss`), anonymously.
    let (status, location, body) = fetch(&browser(None), &redirect).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location, None);
    answers.push(body.clone());
    let connection: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(connection["name"], "tenants/acme/integrations/oidc");
    assert_eq!(connection["status"], "active");
    assert_eq!(connection["auth_mode"], "oauth2_code");
    assert_eq!(connection["has_refresh_token"], true);
    assert_eq!(connection["scopes"], json!(["read", "write"]));

    // Listed and shown with the tenant's key: metadata only.
    let (status, listed) = suite
        .call_with(&acme, Method::GET, "/tenants/acme/integrations", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["connections"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["connections"][0]["name"], connection["name"]);
    answers.push(listed.to_string());
    let (status, shown) = suite
        .call_with(
            &acme,
            Method::GET,
            "/tenants/acme/integrations/oidc/credentials",
            None,
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    answers.push(shown.to_string());

    // Replaying the redirect is refused, naming the state.
    let (status, _, replay) = fetch(&browser(None), &redirect).await;
    let replay: Value = serde_json::from_str(&replay).unwrap();
    let detail = assert_problem(status, &replay, 400, "INVALID_ARGUMENT");
    assert_eq!(
        detail,
        "state: was already used; start the authorization again"
    );
    answers.push(replay.to_string());

    // The token works at the provider and is in no answer.
    let token = access_token(&suite, "tenants/acme/integrations/oidc").await;
    assert_eq!(oauth_server().resource(&token).await.0, 200);
    for answer in &answers {
        assert!(
            !answer.contains(&token),
            "a token value was answered: {answer}"
        );
        assert!(!answer.contains("\"access_token\"") && !answer.contains("\"refresh_token\""));
    }
}

#[tokio::test]
async fn a_flow_with_a_return_url_ends_with_a_redirect_naming_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, port) = oidc_suite(&dir).await;
    let (status, started) = suite
        .post(
            "/oauth/authorize/oidc",
            json!({"tenant_id": "acme", "return_url": "https://app.acme.example/done/x?tab=1"}),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let redirect = approve(started["authorization_url"].as_str().unwrap(), port).await;
    let (status, location, body) = fetch(&browser(None), &redirect).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        location.as_deref(),
        Some(
            "https://app.acme.example/done/x?tab=1&connection=tenants%2Facme%2Fintegrations%2Foidc"
        )
    );

    // A return URL off the tenant's allow-list is refused at the start.
    let (status, body) = suite
        .post(
            "/oauth/authorize/oidc",
            json!({"tenant_id": "beta", "return_url": "https://app.acme.example/done"}),
        )
        .await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(
        detail,
        "return_url is not on the tenant's allow-list of return URLs"
    );
    assert_eq!(body["errors"][0]["field"], "return_url");
}

#[tokio::test]
async fn a_state_issued_for_beta_cannot_be_completed_through_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, port) = oidc_suite(&dir).await;
    let acme_admin = suite.tenant_key("acme", &["admin"]).await;

    // Acme's admin cannot start a flow for beta: beta is absent to it.
    let (status, body) = suite
        .call_with(
            &suite.client_as(&acme_admin),
            Method::POST,
            "/oauth/authorize/oidc",
            Some(json!({"tenant_id": "beta"})),
        )
        .await;
    let detail = assert_problem(status, &body, 404, "NOT_FOUND");
    assert_eq!(detail, "tenant 'beta' does not exist");

    let (status, started) = suite
        .post("/oauth/authorize/oidc", json!({"tenant_id": "beta"}))
        .await;
    assert_eq!(status, 200, "{started}");
    let redirect = approve(started["authorization_url"].as_str().unwrap(), port).await;

    // Beta's redirect sent with acme's key: as unknown as a forged state,
    // and not consumed.
    let (status, _, body) = fetch(&browser(Some(&acme_admin)), &redirect).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(detail, "state is unknown");
    // Nor under another integration's callback.
    let elsewhere = redirect.replace("/oauth/callback/oidc?", "/oauth/callback/github?");
    let (status, _, body) = fetch(&browser(None), &elsewhere).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(
        detail,
        "integration is not the integration the state was issued for"
    );
    let (status, listed) = suite
        .call_with(
            &suite.client_as(&acme_admin),
            Method::GET,
            "/tenants/acme/integrations",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["connections"], json!([]));

    // An unknown state and a missing one: clear problems naming `state`.
    let forged = suite.url(&format!(
        "/oauth/callback/oidc?state={}&code=x",
        "A".repeat(43)
    ));
    let (status, _, body) = fetch(&browser(None), &forged).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        assert_problem(status, &body, 400, "INVALID_ARGUMENT"),
        "state is unknown"
    );
    let (status, _, body) = fetch(&browser(None), &suite.url("/oauth/callback/oidc?code=x")).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        assert_problem(status, &body, 400, "INVALID_ARGUMENT"),
        "state is required"
    );
    assert_eq!(body["errors"][0]["field"], "state");
}

/// Starts a flow for acme (with `return_url` when not empty) and has the
/// user `decision` it at the provider: the redirect URL the provider sent.
async fn decided(suite: &Suite, port: u16, return_url: &str, decision: Decision) -> String {
    let mut body = json!({"tenant_id": "acme"});
    if !return_url.is_empty() {
        body["return_url"] = json!(return_url);
    }
    let (status, started) = suite.post("/oauth/authorize/oidc", body).await;
    assert_eq!(status, 200, "{started}");
    let url = started["authorization_url"]
        .as_str()
        .unwrap()
        .replace(&format!("https://localhost:{port}"), &oauth_server().issuer);
    oauth_server()
        .authorize_as(&url, &decision)
        .await
        .unwrap()
        .location
}

#[tokio::test]
async fn a_refused_flow_with_a_return_url_goes_back_with_the_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, port) = oidc_suite(&dir).await;
    let return_url = "https://app.acme.example/done/x?tab=1";

    // The user presses Cancel: the provider redirects with
    // `error=access_denied` (and its own description, never repeated).
    let redirect = decided(&suite, port, return_url, Decision::Deny).await;
    assert!(redirect.contains("error=access_denied"), "{redirect}");
    assert!(redirect.contains("error_description="), "{redirect}");
    let (status, location, body) = fetch(&browser(None), &redirect).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        location.as_deref(),
        Some("https://app.acme.example/done/x?tab=1&error=access_denied")
    );
    // The state is used up: a replay is a problem, never a redirect.
    let (status, location, body) = fetch(&browser(None), &redirect).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        assert_problem(status, &body, 400, "INVALID_ARGUMENT"),
        "state: was already used; start the authorization again"
    );
    assert_eq!(location, None);

    // The provider refusing the code (one it never issued) ends the same
    // way, with `exchange_failed`.
    let redirect = decided(
        &suite,
        port,
        return_url,
        Decision::Approve {
            login: "alice".into(),
        },
    )
    .await;
    let mut url = reqwest::Url::parse(&redirect).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" { "forged-code".into() } else { v };
            (k.into_owned(), v.into_owned())
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, location, body) = fetch(&browser(None), url.as_str()).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        location.as_deref(),
        Some("https://app.acme.example/done/x?tab=1&error=exchange_failed")
    );

    // Without a return URL the refusal is answered as before: a problem.
    let redirect = decided(&suite, port, "", Decision::Deny).await;
    let (status, location, body) = fetch(&browser(None), &redirect).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        assert_problem(status, &body, 422, "FAILED_PRECONDITION"),
        "oidc refused the request: `access_denied` (HTTP 302)"
    );
    assert_eq!(location, None);

    // A state nobody issued is never redirected, error or not.
    let forged = suite.url(&format!(
        "/oauth/callback/oidc?state={}&error=access_denied",
        "A".repeat(43)
    ));
    let (status, location, body) = fetch(&browser(None), &forged).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        assert_problem(status, &body, 400, "INVALID_ARGUMENT"),
        "state is unknown"
    );
    assert_eq!(location, None);

    // Nothing was stored by any of them.
    let (status, listed) = suite.get("/tenants/acme/integrations").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["connections"], json!([]));
    let (status, body) = suite
        .get("/tenants/acme/integrations/oidc/credentials")
        .await;
    assert_eq!(
        assert_problem(status, &body, 404, "NOT_FOUND"),
        "connection not found"
    );
}
