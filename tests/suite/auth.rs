//! Authentication at the edge with API keys, and per-tenant rate limits.
//! Every refusal is 401 problem+json with a `WWW-Authenticate` challenge,
//! and changes nothing.

use std::time::{Duration, Instant};

use locksmith_edge::auth::AuthConfig;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Suite, assert_problem, create_tenant};

/// `GET path` with `Authorization: <authorization>` (raw), answering status,
/// the challenge header and the body.
async fn get_with(
    suite: &Suite,
    edge: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = suite.anonymous.get(format!("{edge}{path}"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, challenge, body)
}

async fn assert_refused(suite: &Suite, edge: &str, authorization: Option<&str>, detail: &str) {
    let (status, challenge, body) = get_with(suite, edge, "/tenants/acme", authorization).await;
    let got = assert_problem(status, &body, 401, "UNAUTHENTICATED");
    assert_eq!(got, detail, "{authorization:?}");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"locksmith\""));
}

#[tokio::test]
async fn missing_malformed_and_unknown_credentials_are_refused() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let edge = suite.edge.clone();
    let needs = "this route needs credentials: Authorization: Bearer <API key or JWT>";
    assert_refused(&suite, &edge, None, needs).await;
    let shape = "the Authorization header must be `Bearer <API key or JWT>`";
    for bad in [
        "Basic YWRtaW46YWRtaW4=",
        "Bearer",
        "Bearer ",
        "lsk_x",
        "Token abc",
    ] {
        assert_refused(&suite, &edge, Some(bad), shape).await;
    }
    assert_refused(
        &suite,
        &edge,
        Some("Bearer not-a-key"),
        "the bearer credential is neither a Locksmith API key nor a JWT",
    )
    .await;
    let unknown = "the API key is unknown, revoked or expired";
    for key in [
        "lsk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "lsk_short",
    ] {
        assert_refused(&suite, &edge, Some(&format!("Bearer {key}")), unknown).await;
    }
    // A real key id with someone else's secret.
    let real = suite.tenant_key("acme", &["read"]).await;
    let forged = format!("{}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &real[..21]);
    assert_ne!(forged, real);
    assert_refused(&suite, &edge, Some(&format!("Bearer {forged}")), unknown).await;
    // The anonymous paths need nothing.
    for path in ["/health", "/openapi.json"] {
        assert_eq!(get_with(&suite, &edge, path, None).await.0, 200, "{path}");
    }
    // Nothing was created by any of it.
    let (_, keys) = suite.get("/tenants/acme/api-keys").await;
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_here_and_within_the_bound_elsewhere() {
    let mut suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let bound = Duration::from_millis(600);
    let other = suite
        .extra_edge(AuthConfig {
            cache_ttl_ms: 600,
            ..AuthConfig::default()
        })
        .await;
    let key = suite.tenant_key("acme", &["read"]).await;
    let bearer = format!("Bearer {key}");
    // Both replicas know the key (and cache it).
    assert_eq!(
        get_with(&suite, &suite.edge, "/tenants/acme", Some(&bearer))
            .await
            .0,
        200
    );
    assert_eq!(
        get_with(&suite, &other, "/tenants/acme", Some(&bearer))
            .await
            .0,
        200
    );

    let (_, keys) = suite.get("/tenants/acme/api-keys").await;
    let key_id = keys["api_keys"][0]["key_id"].as_str().unwrap().to_owned();
    let revoked_at = Instant::now();
    let (status, _) = suite
        .delete(&format!("/tenants/acme/api-keys/{key_id}"))
        .await;
    assert_eq!(status, 204);
    // The replica that revoked it refuses it at once.
    assert_refused(
        &suite,
        &suite.edge.clone(),
        Some(&bearer),
        "the API key is unknown, revoked or expired",
    )
    .await;
    // The other replica refuses it within its cache bound.
    loop {
        let (status, _, _) = get_with(&suite, &other, "/tenants/acme", Some(&bearer)).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < bound + Duration::from_millis(400),
            "still accepted after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A whole key pasted where its id belongs is refused without being repeated.
    let (status, body) = suite.delete(&format!("/tenants/acme/api-keys/{key}")).await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(
        detail,
        "key_id must be the key's id: 16 lowercase hex characters"
    );
    assert!(!body.to_string().contains(&key[21..]), "{body}");
    // The listing shows it revoked, without any secret.
    let (_, keys) = suite.get("/tenants/acme/api-keys").await;
    assert!(keys["api_keys"][0]["revoked_at"].is_string(), "{keys}");
    assert!(!keys.to_string().contains(&key[21..]), "{keys}");
}

#[tokio::test]
async fn an_expired_key_and_a_suspended_tenants_key_are_refused() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    create_tenant(&suite, "beta").await;
    let (status, body) = suite
        .post(
            "/tenants/acme/api-keys",
            json!({"display_name": "short", "roles": ["read"], "expires_in_seconds": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let short = format!("Bearer {}", body["key"].as_str().unwrap());
    assert_eq!(
        get_with(&suite, &suite.edge, "/tenants/acme", Some(&short))
            .await
            .0,
        200
    );
    // Past its expiry the cached verification is not trusted either.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_refused(
        &suite,
        &suite.edge.clone(),
        Some(&short),
        "the API key is unknown, revoked or expired",
    )
    .await;

    let beta = format!("Bearer {}", suite.tenant_key("beta", &["read"]).await);
    let (status, _, _) = get_with(&suite, &suite.edge, "/tenants/beta", Some(&beta)).await;
    assert_eq!(status, 200);
    let (status, body) = suite
        .patch(
            "/tenants/beta",
            json!({"version": 1, "status": "suspended"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get_with(&suite, &suite.edge, "/tenants/beta", Some(&beta)).await;
    let detail = assert_problem(status, &body, 401, "UNAUTHENTICATED");
    assert_eq!(detail, "the API key's tenant is suspended");
}

#[tokio::test]
async fn a_tenant_cannot_lift_its_own_suspension_or_quota() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let admin = suite.client_as(&suite.tenant_key("acme", &["admin"]).await);
    for change in [
        json!({"status": "active"}),
        json!({"quotas": {"requests_per_minute": 1000000}}),
    ] {
        let mut body = change.clone();
        body["version"] = json!(1);
        let (status, problem) = suite
            .call_with(&admin, Method::PATCH, "/tenants/acme", Some(body))
            .await;
        let detail = assert_problem(status, &problem, 403, "PERMISSION_DENIED");
        assert_eq!(detail, "this call needs an operator admin key", "{change}");
    }
    // Its own display name is its admin's to change.
    let (status, body) = suite
        .call_with(
            &admin,
            Method::PATCH,
            "/tenants/acme",
            Some(json!({"version": 1, "display_name": "Acme Inc"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_tenant_over_its_quota_gets_429_and_others_are_not_slowed() {
    let suite = Suite::start().await;
    let (status, body) = suite
        .post(
            "/tenants",
            json!({"id": "busy", "display_name": "Busy", "quotas": {"requests_per_minute": 3}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    create_tenant(&suite, "calm").await;
    let busy = suite.client_as(&suite.tenant_key("busy", &["read"]).await);
    let calm = suite.client_as(&suite.tenant_key("calm", &["read"]).await);
    for remaining in [2, 1, 0] {
        let resp = busy.get(suite.url("/tenants/busy")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"tenant\";q=3;w=60");
        assert_eq!(
            resp.headers()["ratelimit"],
            format!("\"tenant\";r={remaining};t=0").as_str()
        );
    }
    let resp = busy.get(suite.url("/tenants/busy")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(
        resp.headers()["ratelimit"],
        format!("\"tenant\";r=0;t={retry_after}").as_str()
    );
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    let detail = assert_problem(429, &body, 429, "RATE_LIMITED");
    assert_eq!(
        detail,
        "the tenant's limit of 3 requests per minute is used up"
    );
    // Another tenant is served as usual, and so is the operator.
    for _ in 0..10 {
        assert_eq!(
            calm.get(suite.url("/tenants/calm"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(suite.get("/tenants/busy").await.0, 200);
}
