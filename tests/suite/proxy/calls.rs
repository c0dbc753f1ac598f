//! Calls through the proxy: the credential injected where the catalog says
//! and nothing of the caller's reaching the API; the SSRF guard; another
//! tenant; redirects; retries; the tenant's rate limit at the proxy itself.

use std::time::{Duration, Instant};

use locksmith_proxy::forward::UpstreamConfig;
use reqwest::Method;
use serde_json::json;

use super::{World, call, raw_get, reason};
use crate::harness::assert_problem;

#[tokio::test]
async fn each_method_reaches_the_api_with_the_connections_credential_only() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store(
        "tenants/acme",
        "keyed",
        json!({"api_key": {"key": "k-acme-123"}}),
    )
    .await;
    let acme = w.suite.client_as(&w.acme_key);
    let url = |path: &str| w.suite.url(&format!("/proxy/keyed{path}"));

    // JSON in, JSON back; the caller's own credentials never go upstream.
    let resp = acme
        .post(url("/v1/items/echo?limit=5&q=a%20b"))
        .header("cookie", "mine=1")
        .header("x-api-key", "the-callers-own")
        .json(&json!({"name": "widget"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let h = resp.headers().clone();
    assert_eq!(h["x-seen-method"], "POST");
    assert_eq!(h["x-seen-target"], "/keyed/v1/items/echo?limit=5&q=a%20b");
    assert_eq!(
        h["x-seen-credential"], "k-acme-123",
        "the connection's key, not the caller's"
    );
    assert_eq!(h["x-seen-cookie"], "0");
    assert_eq!(
        h["x-seen-api-version"], "2024-01",
        "the catalog's default header"
    );
    assert!(
        h.get("set-cookie").is_none(),
        "no upstream cookie comes back"
    );
    assert!(
        h.get("x-hop").is_none(),
        "nor a header its Connection named"
    );
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"name": "widget"})
    );
    let seen = w.api.hits().pop().unwrap();
    assert!(
        seen.headers.get("authorization").is_none(),
        "the edge key never reaches the API"
    );

    // Binary in and out, byte for byte, with PUT; then GET and DELETE.
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let resp = acme
        .put(url("/blob/echo"))
        .header("content-type", "application/octet-stream")
        .body(binary.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), binary.as_slice());
    for method in [Method::GET, Method::DELETE] {
        let resp = acme
            .request(method.clone(), url("/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-seen-method"], method.as_str());
        assert_eq!(resp.headers()["x-seen-credential"], "k-acme-123");
    }

    // The key in the query, as `queried` takes it; basic from user:password.
    w.store(
        "tenants/acme",
        "queried",
        json!({"api_key": {"key": "q-456"}}),
    )
    .await;
    let resp = acme
        .get(w.suite.url("/proxy/queried/echo?page=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-seen-target"],
        "/queried/echo?page=2&key=q-456"
    );
    let resp = acme
        .get(w.suite.url("/proxy/queried/echo?key=mine"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert!(detail.contains("key"), "{detail}");
    w.store(
        "tenants/acme",
        "basicapi",
        json!({"basic": {"username": "ann", "password": "p@ss"}}),
    )
    .await;
    let resp = acme
        .get(w.suite.url("/proxy/basicapi/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-seen-credential"], "Basic YW5uOnBAc3M=");

    // Every call is audited without a credential or a query.
    let events = w.suite.proxy_audit.events();
    let posted = events.iter().find(|e| e.method == "POST").unwrap();
    assert_eq!(posted.connection, "tenants/acme/integrations/keyed");
    assert_eq!(posted.integration, "keyed");
    assert_eq!(posted.host, "127.0.0.1");
    assert_eq!(posted.path, "/v1/items/echo");
    assert_eq!(posted.status, Some(201));
    assert_eq!(posted.bytes_in, 17);
    assert_eq!(posted.bytes_out, 17);
    let trail = format!("{events:?}");
    for secret in ["k-acme-123", "q-456", "YW5u", "p@ss", "limit=5"] {
        assert!(!trail.contains(secret), "{secret} in the audit trail");
    }
}

#[tokio::test]
async fn paths_that_could_leave_the_api_are_refused_and_nothing_is_sent() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store("tenants/acme", "keyed", json!({"api_key": {"key": "k"}}))
        .await;
    w.store("tenants/acme", "internal", json!({"api_key": {"key": "k"}}))
        .await;
    w.store("tenants/acme", "metadata", json!({"api_key": {"key": "k"}}))
        .await;
    let cases = [
        "/proxy/keyed/../admin",
        "/proxy/keyed/a/../../admin",
        "/proxy/keyed/a/%2e%2e/admin",
        "/proxy/keyed/a%2Fb",
        "/proxy/keyed/a%5c..%5cb",
        "/proxy/keyed/a\\b",
        "/proxy/keyed//evil.example/x",
        "/proxy/keyed/@evil.example/x",
        "/proxy/keyed/a%0d%0aHost:%20evil",
        "/proxy/keyed/http://evil.example/x",
    ];
    for target in cases {
        let (status, body) = raw_get(&w.suite.edge, target, &w.acme_key).await;
        let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert_eq!(body["errors"][0]["field"], "path", "{target}: {body}");
        assert!(!detail.is_empty(), "{target}");
    }
    // An API at another internal address: refused by the egress guard.
    let acme = w.suite.client_as(&w.acme_key);
    for integration in ["internal", "metadata"] {
        let resp = acme
            .get(w.suite.url(&format!("/proxy/{integration}/echo")))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap();
        let detail = assert_problem(status, &body, 403, "PERMISSION_DENIED");
        assert!(detail.contains("egress policy"), "{detail}");
    }
    assert_eq!(w.api.count(), 0, "nothing reached the API");
}

#[tokio::test]
async fn a_redirect_comes_back_unfollowed_and_the_credential_stays_home() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store(
        "tenants/acme",
        "keyed",
        json!({"api_key": {"key": "k-redirect"}}),
    )
    .await;
    let elsewhere = format!("https://127.0.0.1:{}/steal/echo", w.elsewhere_front);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", w.acme_key).parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let resp = client
        .get(w.suite.url("/proxy/keyed/redirect"))
        .query(&[("to", elsewhere.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], elsewhere.as_str());
    assert_eq!(w.api.count(), 1);
    assert_eq!(
        w.elsewhere.count(),
        0,
        "the other host got nothing, no credential"
    );
}

#[tokio::test]
async fn another_tenant_cannot_use_a_connection_over_http_or_grpc() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store(
        "tenants/acme",
        "keyed",
        json!({"api_key": {"key": "k-acme"}}),
    )
    .await;
    let beta = w.suite.client_as(&w.beta_key);
    let attempts = [
        ("locksmith-owner", "tenants/acme"),
        ("locksmith-connection", "tenants/acme/integrations/keyed"),
    ];
    for (header, value) in attempts {
        let resp = beta
            .get(w.suite.url("/proxy/keyed/echo"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap();
        assert_problem(status, &body, 404, "NOT_FOUND");
    }
    // beta's own (absent) connection: the same answer.
    let resp = beta
        .get(w.suite.url("/proxy/keyed/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A beta workload naming acme's connection over gRPC, both RPCs.
    let mut client = w.workload("beta");
    let err = client
        .call(call("tenants/acme/integrations/keyed", "GET", "/echo"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (tonic::Code::NotFound, "NOT_FOUND")
    );
    let first = pb_stream_request("tenants/acme/integrations/keyed");
    let err = client
        .stream_call(futures::stream::iter([first]))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (tonic::Code::NotFound, "NOT_FOUND")
    );
    assert_eq!(w.api.count(), 0, "nothing reached the API");

    // acme's own workload gets through.
    let answer = w
        .workload("acme")
        .call(call("tenants/acme/integrations/keyed", "GET", "/echo"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.head.unwrap().status, 200);
    assert_eq!(w.api.count(), 1);
}

fn pb_stream_request(connection: &str) -> locksmith_proto::proxy::v1::StreamCallRequest {
    locksmith_proto::proxy::v1::StreamCallRequest {
        head: call(connection, "GET", "/echo").head,
        body: Default::default(),
    }
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store("tenants/acme", "keyed", json!({"api_key": {"key": "k"}}))
        .await;
    let started = Instant::now();
    let resp = w
        .suite
        .client_as(&w.acme_key)
        .get(w.suite.url("/proxy/keyed/flaky"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let hits = w.api.hits();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter()
            .all(|h| h.method == "GET" && h.target == "/keyed/flaky")
    );
    // A POST is not retried: its 429 comes back as is.
    let resp = w
        .suite
        .client_as(&w.acme_key)
        .post(w.suite.url("/proxy/keyed/status/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn the_tenants_rate_limit_holds_at_the_proxy_too() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store("tenants/acme", "keyed", json!({"api_key": {"key": "k"}}))
        .await;
    let (status, body) = w
        .suite
        .patch(
            "/tenants/acme",
            json!({"version": 1, "quotas": {"requests_per_minute": 2}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A workload reaches the proxy without the edge: the proxy counts.
    let mut client = w.workload("acme");
    for _ in 0..2 {
        client
            .call(call("tenants/acme/integrations/keyed", "GET", "/echo"))
            .await
            .unwrap();
    }
    let err = client
        .call(call("tenants/acme/integrations/keyed", "GET", "/echo"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (tonic::Code::ResourceExhausted, "RATE_LIMITED")
    );
    use tonic_types::StatusExt;
    let retry = err
        .get_error_details()
        .retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        retry > Duration::from_secs(20) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
    assert_eq!(w.api.count(), 2);
    // beta is not held back by acme's limit.
    w.store_as_beta().await;
    w.workload("beta")
        .call(call("tenants/beta/integrations/keyed", "GET", "/echo"))
        .await
        .unwrap();
}

impl World {
    async fn store_as_beta(&self) {
        let (status, body) = self
            .suite
            .call_with(
                &self.suite.client_as(&self.beta_key),
                Method::POST,
                "/tenants/beta/integrations/keyed/credentials",
                Some(json!({"credentials": {"api_key": {"key": "k-beta"}}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn connections_to_the_api_are_kept_alive_and_a_response_over_the_cap_is_refused() {
    let w = World::start(UpstreamConfig {
        max_response_bytes: 64 * 1024,
        ..UpstreamConfig::default()
    })
    .await;
    w.store("tenants/acme", "keyed", json!({"api_key": {"key": "k"}}))
        .await;
    let acme = w.suite.client_as(&w.acme_key);
    for _ in 0..20 {
        let resp = acme
            .get(w.suite.url("/proxy/keyed/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(w.api.count(), 20);
    assert_eq!(w.api.connections(), 1, "one pooled keep-alive connection");

    let resp = acme
        .get(w.suite.url("/proxy/keyed/big?bytes=65537"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    let detail = assert_problem(status, &body, 502, "BAD_GATEWAY");
    assert!(detail.contains("exceeds 65536 bytes"), "{detail}");
    let resp = acme
        .get(w.suite.url("/proxy/keyed/big?bytes=65536"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().len(), 65536);
}

#[tokio::test]
async fn an_api_that_speaks_http2_gets_concurrent_calls_on_one_connection() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store("tenants/acme", "h2api", json!({"api_key": {"key": "k-h2"}}))
        .await;
    let acme = w.suite.client_as(&w.acme_key);
    // One call first: the pool learns the API speaks HTTP/2.
    let resp = acme
        .get(w.suite.url("/proxy/h2api/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen-credential"], "Bearer k-h2");
    let calls = (0..10).map(|_| {
        let acme = acme.clone();
        let url = w.suite.url("/proxy/h2api/echo");
        async move { acme.get(url).send().await.unwrap().status() }
    });
    for status in futures::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let hits = w.api.hits();
    assert_eq!(hits.len(), 11);
    assert!(
        hits.iter()
            .all(|h| h.version == axum::http::Version::HTTP_2),
        "{hits:?}"
    );
    assert_eq!(
        w.api.connections(),
        1,
        "every call multiplexed on one connection"
    );
}
