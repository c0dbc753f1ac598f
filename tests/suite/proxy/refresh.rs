//! A 401 from the API: the proxy drops its cached token, has the broker
//! refresh it at the real OAuth server (one token request, counted there),
//! and retries once with the new token.

use locksmith_proxy::forward::UpstreamConfig;
use reqwest::Method;
use serde_json::json;

use super::World;
use crate::oauth_http::{approve, browser, fetch};
use crate::oauth_server::oauth_server;

/// A connection of acme to `oidc`, made through the real flow over the edge.
async fn connect_oidc(w: &World) -> String {
    let acme = w.suite.client_as(&w.acme_key);
    let (status, started) = w
        .suite
        .call_with(
            &acme,
            Method::POST,
            "/oauth/authorize/oidc",
            Some(json!({"tenant_id": "acme"})),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let redirect = approve(started["authorization_url"].as_str().unwrap(), w.oidc_front).await;
    let (status, _, body) = fetch(&browser(None), &redirect).await;
    assert_eq!(status, 200, "{body}");
    let connection: serde_json::Value = serde_json::from_str(&body).unwrap();
    connection["name"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_the_retry_succeeds() {
    let w = World::start(UpstreamConfig::default()).await;
    let name = connect_oidc(&w).await;
    assert_eq!(name, "tenants/acme/integrations/oidc");
    let (_, app) = w.suite.get("/system/secrets/oauth-apps/oidc").await;
    let client_id = app["fields"]["client-id"].as_str().unwrap().to_owned();
    let before = oauth_server().token_requests(&client_id).await;

    let resp = w
        .suite
        .client_as(&w.acme_key)
        .get(w.suite.url("/proxy/oidc/reject-first"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "fresh credential accepted");

    let after = oauth_server().token_requests(&client_id).await;
    assert_eq!(after.count - before.count, 1, "exactly one token request");
    assert_eq!(after.by_grant.get("refresh_token"), Some(&1));
    let hits = w.api.hits();
    assert_eq!(hits.len(), 2, "the refused call and its one retry");
    let tokens: Vec<&str> = hits
        .iter()
        .map(|h| h.headers["authorization"].to_str().unwrap())
        .collect();
    assert!(tokens.iter().all(|t| t.starts_with("Bearer ")));
    assert_ne!(
        tokens[0], tokens[1],
        "the retry carried the refreshed token"
    );

    // The new token is cached: the next call sends it without a refresh.
    let resp = w
        .suite
        .client_as(&w.acme_key)
        .get(w.suite.url("/proxy/oidc/reject-first"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        oauth_server().token_requests(&client_id).await.count,
        after.count
    );
    let last = w.api.hits().pop().unwrap();
    assert_eq!(last.headers["authorization"], tokens[1]);
}
