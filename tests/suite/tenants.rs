//! Tenants through the edge: the whole life cycle with check-and-set.

use serde_json::json;

use crate::harness::{Suite, assert_problem, create_tenant};

#[tokio::test]
async fn tenant_life_cycle_with_check_and_set() {
    let suite = Suite::start().await;
    let (status, created) = suite
        .post(
            "/tenants",
            json!({
                "id": "acme",
                "display_name": "Acme",
                "domain": "acme.example.com",
                "settings": {"region": "eu"},
                "quotas": {"requests_per_minute": 600, "max_connections": 50},
                "enabled_integrations": ["notion", "github", "notion"]
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["status"], "active");
    assert_eq!(created["enabled_integrations"], json!(["github", "notion"]));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, got) = suite.get("/tenants/acme").await;
    assert_eq!((status, &got), (200, &created));

    let (status, patched) = suite
        .patch(
            "/tenants/acme",
            json!({"version": 1, "status": "suspended", "domain": null}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["status"], "suspended");
    assert_eq!(patched["domain"], json!(null));
    assert_eq!(patched["display_name"], "Acme", "fields not named stay");

    let (status, st) = suite.get("/tenants/acme/status").await;
    assert_eq!(status, 200);
    assert_eq!(st["status"], "suspended");
    assert_eq!(st["version"], 2);

    // Version 1 is stale now: refused, nothing changes.
    let (status, body) = suite
        .patch(
            "/tenants/acme",
            json!({"version": 1, "display_name": "Lost"}),
        )
        .await;
    let detail = assert_problem(status, &body, 409, "VERSION_CONFLICT");
    assert!(detail.contains("version 2"), "{detail}");
    assert_eq!(suite.get("/tenants/acme").await.1["display_name"], "Acme");

    // A conditional delete with a stale version is refused too.
    let (status, body) = suite.delete("/tenants/acme?version=1").await;
    assert_problem(status, &body, 409, "VERSION_CONFLICT");

    let (status, _) = suite.delete("/tenants/acme?version=2").await;
    assert_eq!(status, 204);
    let (status, body) = suite.get("/tenants/acme").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let (status, body) = suite.delete("/tenants/acme").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn patch_requires_a_version_and_a_change() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let (status, body) = suite
        .patch("/tenants/acme", json!({"display_name": "X"}))
        .await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert!(detail.contains("version"), "{detail}");
    let (status, body) = suite.patch("/tenants/acme", json!({"version": 1})).await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    // The edge builds the update mask; the caller hears about the body it sent.
    assert!(detail.starts_with("the body changes no field"), "{detail}");
    assert_eq!(body["errors"][0]["field"], "body", "{body}");
    assert_eq!(suite.get("/tenants/acme").await.1["version"], 1);
}

#[tokio::test]
async fn responses_carry_a_request_id_and_echo_the_callers() {
    let suite = Suite::start().await;
    let resp = suite
        .http
        .get(suite.url("/tenants/nope"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], "abc-123");
    assert_eq!(body["instance"], "/tenants/nope");
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 32);

    let resp = suite.http.get(suite.url("/health")).send().await.unwrap();
    assert_eq!(
        resp.headers()["x-request-id"].len(),
        36,
        "a UUID is made up"
    );
}

#[tokio::test]
async fn health_ready_and_openapi() {
    let suite = Suite::start().await;
    assert_eq!(suite.get("/health").await.0, 200);
    let (status, ready) = suite.get("/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["services"]["registry"], "serving");

    let (status, doc) = suite.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/tenants",
        "/admin/tenants",
        "/tenants/{tenant_id}",
        "/tenants/{tenant_id}/status",
        "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
        "/tenants/{tenant_id}/orgs/{org_id}/users",
        "/ready",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
}

#[tokio::test]
async fn ready_reports_a_dead_backend_as_503() {
    let mut suite = Suite::start().await;
    suite.stop_registry();
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..50 {
        let resp = suite.http.get(suite.url("/ready")).send().await.unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").cloned();
        last = (status, resp.json().await.unwrap());
        if status == 503 {
            assert_eq!(retry_after.unwrap(), "5");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_problem(last.0, &last.1, 503, "UNAVAILABLE");
    // The edge itself is alive, and a registry call is a clear 503, not a 500.
    assert_eq!(suite.get("/health").await.0, 200);
    let resp = suite
        .http
        .get(suite.url("/tenants/acme"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_problem(status, &resp.json().await.unwrap(), 503, "UNAVAILABLE");
}
