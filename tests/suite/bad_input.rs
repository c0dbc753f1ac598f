//! Bad input at the edge: each case a precise problem+json, nothing stored.

use serde_json::{Value, json};

use crate::harness::{Suite, assert_problem, create_tenant};

async fn tenant_count(suite: &Suite) -> usize {
    let (_, page) = suite.get("/admin/tenants?page_size=1000").await;
    page["tenants"].as_array().unwrap().len()
}

#[tokio::test]
async fn malformed_tenant_ids_are_refused_in_bodies_and_paths() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let long = "a".repeat(64);
    let cases: &[(&str, &str)] = &[
        ("../x", "must start with a lowercase letter or a digit"),
        ("A", "must start with a lowercase letter or a digit"),
        (&long, "at most 63 characters"),
        ("", "must not be empty"),
        ("ténant", "only lowercase letters, digits and '-'"),
        ("a%2Fb", "only lowercase letters, digits and '-'"),
        ("a/b", "only lowercase letters, digits and '-'"),
    ];
    for (id, why) in cases {
        let (status, body) = suite
            .post("/tenants", json!({"id": id, "display_name": "X"}))
            .await;
        let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert!(detail.contains(why), "{id:?}: {detail}");
        assert_eq!(body["errors"][0]["field"], "id", "{body}");
    }
    // In the path: percent-encoded so each stays one segment and reaches the handler.
    for (raw, why) in [
        ("..%2Fx", "must start with"),
        ("A", "must start with"),
        (long.as_str(), "at most 63"),
        ("t%C3%A9nant", "only lowercase"),
        ("a%2Fb", "only lowercase"),
        ("a%252Fb", "only lowercase"),
        ("%00", "must start with"),
    ] {
        for path in [
            format!("/tenants/{raw}"),
            format!("/tenants/{raw}/status"),
            format!("/tenants/{raw}/orgs"),
        ] {
            let (status, body) = suite.get(&path).await;
            let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
            assert!(detail.contains(why), "{path}: {detail}");
            assert_eq!(body["errors"][0]["field"], "tenant_id", "{body}");
        }
    }
    // A path that does not decode to UTF-8 is refused before any lookup.
    let (status, body) = suite.get("/tenants/%FF").await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(tenant_count(&suite).await, 1, "nothing was created");
}

#[tokio::test]
async fn duplicates_stale_versions_and_unknown_tenants() {
    let suite = Suite::start().await;
    let original = create_tenant(&suite, "acme").await;
    let (status, body) = suite
        .post("/tenants", json!({"id": "acme", "display_name": "Other"}))
        .await;
    let detail = assert_problem(status, &body, 409, "ALREADY_EXISTS");
    assert!(detail.contains("tenant 'acme' already exists"), "{detail}");

    suite
        .patch(
            "/tenants/acme",
            json!({"version": 1, "display_name": "Acme 2"}),
        )
        .await;
    let (status, body) = suite
        .patch(
            "/tenants/acme",
            json!({"version": 1, "display_name": "Acme 3"}),
        )
        .await;
    let detail = assert_problem(status, &body, 409, "VERSION_CONFLICT");
    assert_eq!(detail, "tenant 'acme' is at version 2, not 1");

    let (status, body) = suite.get("/tenants/nobody").await;
    let detail = assert_problem(status, &body, 404, "NOT_FOUND");
    assert_eq!(detail, "tenant 'nobody' does not exist");
    let (status, body) = suite
        .patch(
            "/tenants/nobody",
            json!({"version": 1, "display_name": "X"}),
        )
        .await;
    assert_problem(status, &body, 404, "NOT_FOUND");

    let (_, now) = suite.get("/tenants/acme").await;
    assert_eq!(now["display_name"], "Acme 2");
    assert_eq!(now["created_at"], original["created_at"]);
}

#[tokio::test]
async fn oversized_and_malformed_bodies() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let big = json!({"id": "big", "display_name": "B", "settings": {"k": "v".repeat(70 * 1024)}});
    let (status, body) = suite.post("/tenants", big).await;
    assert_problem(status, &body, 413, "PAYLOAD_TOO_LARGE");

    let send_raw = |path: &str, method: reqwest::Method, ct: &'static str, raw: &'static str| {
        suite
            .http
            .request(method, suite.url(path))
            .header("content-type", ct)
            .body(raw)
            .send()
    };
    for raw in [
        "{not json",
        "[1,2]",
        "{\"id\": 5, \"display_name\": \"x\"}",
        "{\"id\":\"x\"}",
    ] {
        let resp = send_raw("/tenants", reqwest::Method::POST, "application/json", raw)
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body: Value = resp.json().await.unwrap();
        let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert!(!detail.is_empty(), "{raw}");
    }
    // A value of the wrong type is named by field, never echoed (it could be a secret).
    let (status, body) = suite
        .post(
            "/tenants",
            json!({"id": "x", "display_name": "X", "quotas": {"max_connections": "s3cr3t-value"}}),
        )
        .await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert!(
        detail.contains("max_connections") && !detail.contains("s3cr3t"),
        "{detail}"
    );
    // Unknown fields are named, not ignored.
    let (status, body) = suite
        .post(
            "/tenants",
            json!({"id": "x", "display_name": "X", "colour": "red"}),
        )
        .await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert!(detail.contains("colour"), "{detail}");
    // Not JSON at all.
    let resp = send_raw("/tenants", reqwest::Method::POST, "text/plain", "id=x")
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_problem(
        status,
        &resp.json().await.unwrap(),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    // Invalid field values are all reported at once.
    let (status, body) = suite
        .post(
            "/tenants",
            json!({"id": "x", "display_name": "", "domain": "not a domain", "settings": {"Bad Key": "v"}}),
        )
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["display_name", "domain", "settings.Bad Key"]);
    // PATCH with garbage leaves the tenant as it was.
    let resp = send_raw(
        "/tenants/acme",
        reqwest::Method::PATCH,
        "application/json",
        "{\"version\":",
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (_, acme) = suite.get("/tenants/acme").await;
    assert_eq!(acme["version"], 1);
    assert_eq!(tenant_count(&suite).await, 1, "nothing was created");
}

#[tokio::test]
async fn unknown_routes_methods_and_query_parameters() {
    let suite = Suite::start().await;
    let (status, body) = suite.get("/nope").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let resp = suite.http.put(suite.url("/tenants")).send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(resp.headers().contains_key("allow"));
    assert_problem(
        status,
        &resp.json().await.unwrap(),
        405,
        "METHOD_NOT_ALLOWED",
    );
    let (status, body) = suite.get("/admin/tenants?page_size=abc").await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    let (status, body) = suite.get("/admin/tenants?pagesize=10").await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
}
