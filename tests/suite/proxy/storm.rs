//! The refresh storm (design brief §6): a thousand concurrent calls on an
//! expired token, spread over three proxy replicas, make exactly one token
//! request at the real OAuth server (counted there), and every call
//! succeeds with the refreshed token. Each replica's single flight turns its
//! calls into one GetAccessToken; the broker's flight and lease turn those
//! into one refresh.
//!
//! `make bench` runs this test too, with `LOCKSMITH_STORM_RESULTS` naming a
//! file for the figures.

use std::{sync::Arc, time::Instant};

use locksmith_proxy::forward::UpstreamConfig;
use serde_json::json;

use super::{World, call};
use crate::oauth_server::{oauth_server, pkce_pair};

const CALLS: usize = 1000;
const REPLICAS: usize = 3;

#[tokio::test]
async fn a_thousand_calls_on_an_expired_token_across_three_proxies_refresh_once() {
    let mut w = World::start(UpstreamConfig::default()).await;
    let server = oauth_server();

    // Tokens from a real code flow, imported as expiring in a second.
    let (verifier, challenge) = pkce_pair();
    let url = server.authorization_url(&w.client, "read write", "storm", Some(&challenge));
    let callback = server.authorize(&url).await.unwrap();
    let tokens = server
        .exchange_code(&w.client, callback.code(), Some(&verifier))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let stale = tokens.body["access_token"].as_str().unwrap().to_owned();
    w.store(
        "tenants/acme",
        "oidc",
        json!({"tokens": {
            "access_token": stale,
            "refresh_token": tokens.body["refresh_token"],
            "expires_in": 1,
        }}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let mut urls = vec![w.suite.proxy.url.clone()];
    for _ in 1..REPLICAS {
        let setup = w.proxy_setup.clone();
        urls.push(w.suite.extra_proxy(setup).await.url);
    }
    let clients: Vec<_> = urls.iter().map(|u| w.workload_at("acme", u)).collect();
    let before = server.token_requests(&w.client.client_id).await;

    let started = Instant::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let mut calls = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let mut client = clients[i % REPLICAS].clone();
        let barrier = Arc::clone(&barrier);
        calls.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .call(call("tenants/acme/integrations/oidc", "GET", "/storm/echo"))
                .await
                .map(|r| r.into_inner().head.unwrap().status)
        }));
    }
    let mut ok = 0;
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 200);
        ok += 1;
    }
    let elapsed = started.elapsed();
    let after = server.token_requests(&w.client.client_id).await;
    let token_requests = after.count - before.count;
    assert_eq!(ok, CALLS);
    assert_eq!(
        token_requests, 1,
        "exactly one token request for {CALLS} calls"
    );
    assert_eq!(
        after.by_grant.get("refresh_token").copied().unwrap_or(0)
            - before.by_grant.get("refresh_token").copied().unwrap_or(0),
        1
    );
    let hits = w.api.hits();
    assert_eq!(hits.len(), CALLS, "no call was retried or lost");
    let sent: std::collections::BTreeSet<&str> = hits
        .iter()
        .map(|h| h.headers["authorization"].to_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "every call carried the one refreshed token");
    assert!(!sent.contains(format!("Bearer {stale}").as_str()));

    if let Ok(path) = std::env::var("LOCKSMITH_STORM_RESULTS") {
        let figures = format!(
            "# Refresh storm\n\n{} concurrent proxied calls (unary gRPC, workload certificates) on an \
             expired token, spread over {REPLICAS} proxy replicas sharing one broker, against \
             oidc-provider with refresh-token rotation (debug build of the test suite).\n\n\
             | calls | succeeded | token requests at the OAuth server | time |\n\
             | ---: | ---: | ---: | ---: |\n| {CALLS} | {ok} | {token_requests} | {:.2} s |\n",
            CALLS,
            elapsed.as_secs_f64()
        );
        std::fs::write(path, figures).unwrap();
    }
}
