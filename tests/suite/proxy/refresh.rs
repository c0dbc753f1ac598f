//! A 401 from the API: the proxy drops its cached token, has the broker
//! refresh it at the real OAuth server (one token request, counted there),
//! and retries once with the new token. Credentials replaced, refreshed or
//! deleted through the broker leave every proxy replica's cache at once.

use std::time::{Duration, Instant};

use locksmith_proto::proxy::v1::token_proxy_service_client::TokenProxyServiceClient;
use locksmith_proxy::forward::UpstreamConfig;
use reqwest::Method;
use serde_json::json;
use tonic::transport::Channel;

use super::{World, call};
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

/// The authorization header of the API's last request.
fn last_credential(w: &World) -> String {
    let last = w.api.hits().pop().expect("the API was called");
    last.headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Calls `connection` through `proxy` until `done` accepts the outcome (the
/// broker's announcement travels asynchronously), for at most two seconds:
/// far below the replica's hour-long cache, so only the announcement can
/// make it happen.
async fn until<F>(
    proxy: &TokenProxyServiceClient<Channel>,
    connection: &str,
    mut done: F,
) -> Result<u32, tonic::Status>
where
    F: FnMut(&Result<u32, tonic::Status>) -> bool,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let outcome = proxy
            .clone()
            .call(call(connection, "GET", "/watched/echo"))
            .await
            .map(|r| r.into_inner().head.unwrap().status);
        if done(&outcome) || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_replaced_refreshed_or_deleted_credential_leaves_the_cache_at_once() {
    let mut w = World::start(UpstreamConfig::default()).await;
    // A replica that would keep a credential for an hour on its own.
    let mut setup = w.proxy_setup.clone();
    setup.cache.max_age = Duration::from_secs(3600);
    let url = w.suite.extra_proxy(setup).await.url;
    let proxy = w.workload_at("acme", &url);

    // Replaced credentials: the next calls carry the new key.
    let keyed = "tenants/acme/integrations/keyed";
    w.store(
        "tenants/acme",
        "keyed",
        json!({"api_key": {"key": "first-key"}}),
    )
    .await;
    let status = until(&proxy, keyed, |_| true).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        w.api.hits().pop().unwrap().headers["x-api-key"],
        "first-key"
    );
    w.store(
        "tenants/acme",
        "keyed",
        json!({"api_key": {"key": "second-key"}}),
    )
    .await;
    until(&proxy, keyed, |_| {
        w.api.hits().pop().unwrap().headers["x-api-key"] == "second-key"
    })
    .await
    .unwrap();
    assert_eq!(
        w.api.hits().pop().unwrap().headers["x-api-key"],
        "second-key"
    );

    // A refresh through the broker: the next calls carry the new token.
    let oidc = connect_oidc(&w).await;
    until(&proxy, &oidc, |_| true).await.unwrap();
    let old = last_credential(&w);
    let (status, body) = w
        .suite
        .call_with(
            &w.suite.client_as(&w.acme_key),
            Method::POST,
            &format!("/{oidc}/refresh"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until(&proxy, &oidc, |_| last_credential(&w) != old)
        .await
        .unwrap();
    let new = last_credential(&w);
    assert!(new.starts_with("Bearer ") && new != old, "still {new}");

    // A deleted connection: NOT_FOUND, and nothing more reaches the API.
    let (status, body) = w
        .suite
        .call_with(
            &w.suite.client_as(&w.acme_key),
            Method::DELETE,
            &format!("/{keyed}/credentials"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let refused = until(&proxy, keyed, |outcome| outcome.is_err())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    let sent = w.api.hits().len();
    let again = proxy
        .clone()
        .call(call(keyed, "GET", "/watched/echo"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);
    assert_eq!(w.api.hits().len(), sent, "the deleted key was used again");
}
