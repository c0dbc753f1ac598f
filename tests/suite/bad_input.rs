//! Bad input at the edge: each case a precise problem+json, nothing stored.

use serde_json::{Value, json};

use crate::harness::{Suite, assert_problem, create_tenant};

mod bodies;

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

/// Sends `body` as it is (so it may hold duplicate keys or bad JSON), with `headers`.
async fn send_raw(
    suite: &Suite,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut req = suite
        .http
        .request(method, suite.url(path))
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "{path}"
    );
    (status, resp.json().await.unwrap())
}

async fn send_json(suite: &Suite, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    send_raw(
        suite,
        method,
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// Asserts a 400 naming exactly `field` with `description`, and a detail that
/// is the same sentence; `context` names the case in failure messages.
fn assert_violation(context: &str, status: u16, body: &Value, field: &str, description: &str) {
    let detail = assert_problem(status, body, 400, "INVALID_ARGUMENT");
    assert_eq!(
        body["errors"],
        json!([{"field": field, "description": description}]),
        "{context}: {body}"
    );
    let sentence = if field == "body" {
        format!("the body {description}")
    } else {
        format!("{field} {description}")
    };
    assert_eq!(detail, sentence, "{context}");
}

/// Nothing of Rust or serde reaches callers, nor the values they sent.
fn assert_no_leak(context: &str, body: &Value) {
    let text = body.to_string();
    for leak in [
        "s3cr3t",
        "struct",
        "u32",
        "u64",
        "i32",
        "expected",
        "invalid type",
        "`",
        "update_mask",
        "tenant.",
        "spiffe",
    ] {
        assert!(!text.contains(leak), "{context}: {leak:?} in {text}");
    }
}
#[tokio::test]
async fn query_errors_name_the_parameter() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let page_size = "must be a whole number from 1 to 1000";
    let version = "must be a whole number from 1 to 9223372036854775807";
    let cases: &[(reqwest::Method, &str, &str, &str)] = &[
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=abc",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=0",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=1001",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=-1",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=%2B5",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=99999999999",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_size=5&page_size=6",
            "page_size",
            "is given twice",
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?colour=red",
            "colour",
            "is not a parameter of this route",
        ),
        (
            reqwest::Method::GET,
            "/tenants/acme/orgs?page_size=abc",
            "page_size",
            page_size,
        ),
        (
            reqwest::Method::GET,
            "/admin/tenants?page_token=bm9wZQ",
            "page_token",
            "is not a token issued for this listing",
        ),
        (
            reqwest::Method::DELETE,
            "/tenants/acme?version=abc",
            "version",
            version,
        ),
        (
            reqwest::Method::DELETE,
            "/tenants/acme?version=18446744073709551616",
            "version",
            version,
        ),
        (
            reqwest::Method::DELETE,
            "/tenants/acme?version=1&version=1",
            "version",
            "is given twice",
        ),
        (
            reqwest::Method::DELETE,
            "/tenants/acme?page_size=1",
            "page_size",
            "is not a parameter of this route",
        ),
    ];
    for (method, path, field, description) in cases {
        let (status, body) = suite.call(method.clone(), path, None).await;
        assert_violation(path, status, &body, field, description);
        assert_no_leak(path, &body);
    }
    // Every bad parameter is named at once.
    let (status, body) = suite
        .get("/admin/tenants?colour=red&page_size=abc&pagesize=1")
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["colour", "pagesize", "page_size"], "{body}");
    let (status, page) = suite.get("/admin/tenants?page_size=1000&page_token=").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(suite.get("/tenants/acme").await.0, 200, "still there");
}

#[tokio::test]
async fn a_version_given_to_delete_is_a_condition_and_zero_is_refused() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    for (path, body) in [
        (
            "/tenants/acme/orgs",
            json!({"id": "eng", "display_name": "Eng"}),
        ),
        (
            "/tenants/acme/orgs/eng/bots",
            json!({"id": "ci", "display_name": "CI"}),
        ),
        (
            "/tenants/acme/orgs/eng/users",
            json!({"id": "ann", "display_name": "Ann", "email": "ann@acme.example"}),
        ),
    ] {
        let (status, body) = suite.post(path, body).await;
        assert_eq!(status, 201, "{body}");
    }
    let resources = [
        "/tenants/acme/orgs/eng/users/ann",
        "/tenants/acme/orgs/eng/bots/ci",
        "/tenants/acme/orgs/eng",
        "/tenants/acme",
    ];
    for path in resources {
        let (status, body) = suite.delete(&format!("{path}?version=0")).await;
        assert_violation(
            path,
            status,
            &body,
            "version",
            "must be a whole number from 1 to 9223372036854775807",
        );
        assert_eq!(suite.get(path).await.0, 200, "{path} is still there");
    }
    for path in resources {
        let (status, body) = suite.delete(&format!("{path}?version=1")).await;
        assert_eq!(status, 204, "{path}: {body}");
    }
}

#[tokio::test]
async fn path_parameters_are_named() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let (status, body) = suite
        .post(
            "/tenants/acme/orgs",
            json!({"id": "eng", "display_name": "Eng"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let utf8 = "must be UTF-8 text";
    let first = "must start with a lowercase letter or a digit";
    let cases: &[(reqwest::Method, &str, &str, &str)] = &[
        (reqwest::Method::GET, "/tenants/%FF", "tenant_id", utf8),
        (
            reqwest::Method::GET,
            "/tenants/acme/orgs/%FF",
            "org_id",
            utf8,
        ),
        (
            reqwest::Method::GET,
            "/tenants/acme/orgs/eng/bots/%FF",
            "bot_id",
            utf8,
        ),
        (
            reqwest::Method::GET,
            "/tenants/acme/orgs/eng/users/A",
            "user_id",
            first,
        ),
        (
            reqwest::Method::DELETE,
            "/tenants/acme/orgs/Eng",
            "org_id",
            first,
        ),
        (
            reqwest::Method::GET,
            "/tenants/acme/orgs/-/bots",
            "org_id",
            first,
        ),
    ];
    for (method, path, field, description) in cases {
        let (status, body) = suite.call(method.clone(), path, None).await;
        assert_violation(path, status, &body, field, description);
    }
    // On PATCH the id comes from the path, so the path parameter is named, not the body's `id`.
    for (path, field) in [
        ("/tenants/Acme", "tenant_id"),
        ("/tenants/acme/orgs/Eng", "org_id"),
        ("/tenants/acme/orgs/eng/bots/Ci", "bot_id"),
    ] {
        let (status, body) = suite
            .patch(path, json!({"version": 1, "display_name": "X"}))
            .await;
        assert_violation(path, status, &body, field, first);
    }
}
/// Starts a second edge calling the suite's registry as `service`; answers
/// its URL. It serves callers without credentials (on loopback, as an
/// operator), so the only refusal on its way is the registry's.
async fn edge_as(suite: &Suite, service: locksmith_tls::ServiceName) -> String {
    let tls = locksmith_tls::TlsFiles::in_dir(suite.pki.path(), service);
    let config: locksmith_edge::EdgeConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "tls": {"ca": tls.ca, "cert": tls.cert, "key": tls.key},
        "services": {
            "registry": {"url": format!("https://{}", suite.registry_addr)},
            "credstore": {"url": suite.credstore.url},
        },
        "auth": {"require_auth": false},
    }))
    .unwrap();
    let backends =
        locksmith_edge::Backends::connect(&config.services, &tls.load().unwrap()).unwrap();
    let state = locksmith_edge::AppState::new(backends, &config).unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // The edge lives as long as the test's runtime.
    tokio::spawn(async move {
        locksmith_edge::serve(listener, state, &config, std::future::pending())
            .await
            .unwrap();
    });
    url
}

#[tokio::test]
async fn a_backend_refusing_the_edge_is_an_internal_error() {
    let suite = Suite::start().await;
    // The proxy's identity may read the registry but not change it.
    let edge = edge_as(&suite, locksmith_tls::ServiceName::Proxy).await;
    let anonymous = reqwest::Client::new();
    let resp = anonymous
        .post(format!("{edge}/tenants"))
        .json(&json!({"id": "x", "display_name": "X"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let detail = assert_problem(status, &body, 500, "INTERNAL");
    assert_eq!(detail, "internal error; see the service log");
    assert_no_leak("denied", &body);
    // The registry's own answers keep their detail.
    let resp = anonymous
        .get(format!("{edge}/tenants/nobody"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let detail = assert_problem(status, &resp.json().await.unwrap(), 404, "NOT_FOUND");
    assert_eq!(detail, "tenant 'nobody' does not exist");
    assert_eq!(tenant_count(&suite).await, 0, "nothing was created");
}
