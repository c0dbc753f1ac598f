//! Bad JSON bodies at the edge: every error names the field the caller
//! sent, in a sentence, and repeats none of the values.

use serde_json::json;

use super::{assert_no_leak, assert_violation, send_json, send_raw, tenant_count};
use crate::harness::{Suite, assert_problem, create_tenant};

#[tokio::test]
async fn json_body_errors_name_the_field_in_a_sentence() {
    let suite = Suite::start().await;
    let whole_u32 = "must be a whole number from 0 to 4294967295";
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"id":"x","display_name":5}"#,
            "display_name",
            "must be a string",
        ),
        (
            r#"{"id":"x","display_name":null}"#,
            "display_name",
            "must be a string",
        ),
        (r#"{"id":"x"}"#, "display_name", "is required"),
        (
            r#"{"id":"x","display_name":"X","quotas":{"requests_per_minute":"s3cr3t"}}"#,
            "quotas.requests_per_minute",
            whole_u32,
        ),
        (
            r#"{"id":"x","display_name":"X","quotas":{"max_connections":-1}}"#,
            "quotas.max_connections",
            whole_u32,
        ),
        (
            r#"{"id":"x","display_name":"X","quotas":{"max_connections":4294967296}}"#,
            "quotas.max_connections",
            whole_u32,
        ),
        (
            r#"{"id":"x","display_name":"X","quotas":{"max_connections":1.5}}"#,
            "quotas.max_connections",
            whole_u32,
        ),
        (
            r#"{"id":"x","display_name":"X","quotas":7}"#,
            "quotas",
            "must be an object",
        ),
        // serde's derive would fill the struct from an array, by position.
        (
            r#"{"id":"x","display_name":"X","quotas":[]}"#,
            "quotas",
            "must be an object",
        ),
        (
            r#"{"id":"x","display_name":"X","quotas":[5,6]}"#,
            "quotas",
            "must be an object",
        ),
        (
            r#"{"id":"x","display_name":"X","quotas":{"burst":1}}"#,
            "quotas.burst",
            "is not a field of this request",
        ),
        (
            r#"{"id":"x","display_name":"X","colour":"red"}"#,
            "colour",
            "is not a field of this request",
        ),
        (
            r#"{"id":"x","display_name":"X","settings":"s3cr3t"}"#,
            "settings",
            "must be an object",
        ),
        (
            r#"{"id":"x","display_name":"X","settings":{"region":7}}"#,
            "settings.region",
            "must be a string",
        ),
        (
            r#"{"id":"x","display_name":"X","enabled_integrations":"notion"}"#,
            "enabled_integrations",
            "must be an array",
        ),
        (
            r#"{"id":"x","display_name":"X","enabled_integrations":["notion",3]}"#,
            "enabled_integrations[1]",
            "must be a string",
        ),
        (
            r#"{"id":"x","display_name":"X","status":"s3cr3t"}"#,
            "status",
            "must be one of active, suspended",
        ),
        (
            r#"{"id":"x","display_name":"X","status":5}"#,
            "status",
            "must be one of active, suspended",
        ),
        (r#"[1,2]"#, "body", "must be a JSON object"),
        (r#""s3cr3t""#, "body", "must be a JSON object"),
        (
            r#"{not json"#,
            "body",
            "is not valid JSON (line 1, column 2)",
        ),
        (
            "{\"id\":\"x\",\n\"display_name\":",
            "body",
            "is not valid JSON (line 2, column 15)",
        ),
        (
            r#"{"id":"x","display_name":"X"} s3cr3t"#,
            "body",
            "is not valid JSON (line 1, column 31)",
        ),
        ("", "body", "is empty: send a JSON object"),
    ];
    for (raw, field, description) in cases {
        let (status, body) = send_json(&suite, reqwest::Method::POST, "/tenants", raw).await;
        assert_violation(raw, status, &body, field, description);
        assert_no_leak(raw, &body);
    }
    // Bodies with a JSON media type other than application/json are read too.
    let (status, body) = send_raw(
        &suite,
        reqwest::Method::POST,
        "/tenants",
        &[(
            "content-type",
            "application/merge-patch+json; charset=utf-8",
        )],
        r#"{"id":"x"}"#,
    )
    .await;
    assert_violation("+json", status, &body, "display_name", "is required");
    assert_eq!(tenant_count(&suite).await, 0, "nothing was created");
}

#[tokio::test]
async fn patches_need_a_version_of_at_least_one_and_a_change() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let (status, body) = suite
        .post(
            "/tenants/acme/orgs",
            json!({"id": "eng", "display_name": "Eng"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let version_range = "must be a whole number from 1 to 18446744073709551615";
    let tenant_cases: &[(&str, &str, &str)] = &[
        (
            r#"{"version":0,"display_name":"X"}"#,
            "version",
            "must be at least 1: the version this change is based on",
        ),
        (r#"{"display_name":"X"}"#, "version", "is required"),
        (
            r#"{"version":"1","display_name":"X"}"#,
            "version",
            version_range,
        ),
        (
            r#"{"version":-3,"display_name":"X"}"#,
            "version",
            version_range,
        ),
        (
            r#"{"version":1,"colour":"red"}"#,
            "colour",
            "is not a field of this request",
        ),
        (
            r#"{"version":1}"#,
            "body",
            "changes no field; send at least one of display_name, domain, settings, status, quotas, enabled_integrations",
        ),
        (
            r#"{"version":1,"domain":"x.example","domain":null}"#,
            "domain",
            "is given twice",
        ),
    ];
    for (raw, field, description) in tenant_cases {
        let (status, body) = send_json(&suite, reqwest::Method::PATCH, "/tenants/acme", raw).await;
        assert_violation(raw, status, &body, field, description);
        assert_no_leak(raw, &body);
    }
    for (raw, field, description) in [
        (
            r#"{"version":0,"display_name":"E"}"#,
            "version",
            "must be at least 1: the version this change is based on",
        ),
        (
            r#"{"version":1}"#,
            "body",
            "changes no field; send at least one of display_name, labels",
        ),
        // Orgs have no email: not a field of their PATCH.
        (
            r#"{"version":1,"email":"a@b.example"}"#,
            "email",
            "is not a field of this request",
        ),
        // `null` would change nothing: refused, not ignored.
        (
            r#"{"version":1,"display_name":null}"#,
            "display_name",
            "must be a string",
        ),
    ] {
        let (status, body) = send_json(
            &suite,
            reqwest::Method::PATCH,
            "/tenants/acme/orgs/eng",
            raw,
        )
        .await;
        assert_violation(raw, status, &body, field, description);
        assert_no_leak(raw, &body);
    }
    assert_eq!(suite.get("/tenants/acme").await.1["version"], 1);
    assert_eq!(suite.get("/tenants/acme/orgs/eng").await.1["version"], 1);
}

#[tokio::test]
async fn duplicate_keys_are_refused_by_name() {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    let cases: &[(reqwest::Method, &str, &str, &str)] = &[
        (
            reqwest::Method::POST,
            "/tenants",
            r#"{"id":"x","display_name":"X","settings":{"a":"1","a":"2"}}"#,
            "settings.a",
        ),
        (
            reqwest::Method::POST,
            "/tenants",
            r#"{"id":"x","id":"y","display_name":"X"}"#,
            "id",
        ),
        (
            reqwest::Method::POST,
            "/tenants",
            r#"{"id":"x","display_name":"X","quotas":{"max_connections":1,"max_connections":2}}"#,
            "quotas.max_connections",
        ),
        (
            reqwest::Method::PATCH,
            "/tenants/acme",
            r#"{"version":1,"settings":{"region":"eu","region":"us"}}"#,
            "settings.region",
        ),
        (
            reqwest::Method::POST,
            "/tenants/acme/orgs",
            r#"{"id":"eng","display_name":"E","labels":{"team":"a","team":"b"}}"#,
            "labels.team",
        ),
    ];
    for (method, path, raw, field) in cases {
        let (status, body) = send_json(&suite, method.clone(), path, raw).await;
        assert_violation(raw, status, &body, field, "is given twice");
    }
    assert_eq!(tenant_count(&suite).await, 1, "nothing was created");
    let (_, acme) = suite.get("/tenants/acme").await;
    assert_eq!(
        (acme["version"].as_u64(), acme["settings"].clone()),
        (Some(1), json!({}))
    );
    let (status, body) = suite.get("/tenants/acme/orgs/eng").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn registry_violations_reach_callers_as_sentences_with_http_names() {
    let suite = Suite::start().await;
    let (status, body) = suite
        .post(
            "/tenants",
            json!({"id": "x", "display_name": "", "enabled_integrations": ["notion", "Bad"]}),
        )
        .await;
    let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(
        body["errors"],
        json!([
            {"field": "enabled_integrations[1]", "description": "must start with a lowercase letter or a digit"},
        ]),
        "{body}"
    );
    assert_eq!(
        detail,
        "enabled_integrations[1] must start with a lowercase letter or a digit"
    );
    let (status, body) = suite
        .post("/tenants", json!({"id": "x", "display_name": ""}))
        .await;
    assert_violation("empty name", status, &body, "display_name", "is required");
}

#[tokio::test]
async fn encoded_bodies_are_refused_with_415() {
    let suite = Suite::start().await;
    let raw = r#"{"id":"x","display_name":"X"}"#;
    for encoding in ["gzip", "br", "deflate, gzip", "zstd"] {
        let (status, body) = send_raw(
            &suite,
            reqwest::Method::POST,
            "/tenants",
            &[
                ("content-type", "application/json"),
                ("content-encoding", encoding),
            ],
            raw,
        )
        .await;
        let detail = assert_problem(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
        let named = encoding.split(',').next().unwrap_or_default().trim();
        assert_eq!(
            detail,
            format!(
                "the request body is encoded ({named}); the edge reads only unencoded (identity) bodies"
            ),
            "{encoding}"
        );
    }
    assert_eq!(tenant_count(&suite).await, 0, "nothing was created");
    let resp = suite
        .http
        .post(suite.url("/tenants"))
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
}
