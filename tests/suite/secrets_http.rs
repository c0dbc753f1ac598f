//! Secrets over HTTP: the edge's secret routes in front of the credential
//! store. Seed 000's fallback examples, versions and check-and-set, and bad
//! input that is refused by name with nothing written. (Tenant isolation of
//! every secret route is in `matrix`.)

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Suite, assert_problem, populate_tenants};

/// PUTs a small secret to `path` exactly as written, over a raw connection.
async fn raw_put(suite: &Suite, key: &str, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = suite.edge.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"fields":{"token":"t"}}"#;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let json = answer.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

async fn put(suite: &Suite, path: &str, body: Value) -> (u16, Value) {
    suite.call(Method::PUT, path, Some(body)).await
}

const BOT: &str = "/tenants/acme/orgs/sales/bots/m1";
const USER: &str = "/tenants/acme/orgs/sales/users/m1";

#[tokio::test]
async fn seed_000_fallbacks_answer_with_the_scope_that_held_the_secret() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["acme"]).await;

    let smtp = json!({"fields": {
        "smtp-host": "smtp.example.com", "smtp-port": "587", "smtp-user": "bots",
        "smtp-password": "pw-system", "smtp-from": "bots@example.com"}});
    assert_eq!(put(&suite, "/system/secrets/email", smtp).await.0, 201);
    let llm = json!({"fields": {"url": "https://llm.example.com", "model": "default"}});
    assert_eq!(put(&suite, "/system/secrets/llm", llm).await.0, 201);

    // A bot without a mailbox of its own sends through the system's SMTP.
    let (status, email) = suite.get(&format!("{BOT}/resolve/email")).await;
    assert_eq!(status, 200, "{email}");
    assert_eq!(email["scope"], "system");
    assert_eq!(email["name"], "email");
    assert_eq!(email["fields"]["smtp-password"], "pw-system");

    // The bot's LLM is the system default until the bot has its own.
    let (_, llm) = suite.get(&format!("{BOT}/resolve/llm")).await;
    assert_eq!(llm["scope"], "system", "{llm}");
    let own = json!({"fields": {"provider": "anthropic", "model": "claude", "api-key": "sk-bot"}});
    assert_eq!(put(&suite, &format!("{BOT}/secrets/llm"), own).await.0, 201);
    let (_, llm) = suite.get(&format!("{BOT}/resolve/llm")).await;
    assert_eq!(llm["scope"], "tenants/acme/orgs/sales/bots/m1", "{llm}");
    assert_eq!(llm["fields"]["api-key"], "sk-bot");

    // A user's mailbox is the user's own: no fallback, although the system has one.
    let (status, body) = suite.get(&format!("{USER}/resolve/email")).await;
    assert_problem(status, &body, 404, "NOT_FOUND");

    // An org-level secret answers for its bots and users.
    let org = json!({"fields": {"token": "org-token"}});
    let path = "/tenants/acme/orgs/sales/secrets/tools/search";
    assert_eq!(put(&suite, path, org).await.0, 201);
    let (_, found) = suite.get(&format!("{USER}/resolve/tools/search")).await;
    assert_eq!(found["scope"], "tenants/acme/orgs/sales", "{found}");
    assert_eq!(found["name"], "tools/search");

    // A tenant principal never sees the suite's own secrets, even by fallback.
    let tenant_admin = suite.client_as(&suite.tenant_key("acme", &["admin"]).await);
    let (status, body) = suite
        .call_with(
            &tenant_admin,
            Method::GET,
            &format!("{BOT}/resolve/email"),
            None,
        )
        .await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let (status, body) = suite
        .call_with(&tenant_admin, Method::GET, "/system/secrets/email", None)
        .await;
    let detail = assert_problem(status, &body, 403, "PERMISSION_DENIED");
    assert_eq!(detail, "this call needs an operator admin key");
}

#[tokio::test]
async fn versions_check_and_set_listing_and_delete() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["acme"]).await;
    let path = "/tenants/acme/secrets/tools/search";

    let resp = suite
        .http
        .put(suite.url(path))
        .json(&json!({"fields": {"token": "one"}, "expected_version": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["location"], path);
    let written: Value = resp.json().await.unwrap();
    assert_eq!(
        written,
        json!({"name": "tools/search", "scope": "tenants/acme", "version": 1})
    );

    // Create-only again, and a stale version: refused, nothing written.
    let (status, body) = put(
        &suite,
        path,
        json!({"fields": {"token": "x"}, "expected_version": 0}),
    )
    .await;
    assert_problem(status, &body, 409, "VERSION_CONFLICT");
    let (status, body) = put(
        &suite,
        path,
        json!({"fields": {"token": "two"}, "expected_version": 1}),
    )
    .await;
    assert_eq!((status, body["version"].clone()), (200, json!(2)), "{body}");
    let (status, body) = put(
        &suite,
        path,
        json!({"fields": {"token": "x"}, "expected_version": 1}),
    )
    .await;
    assert_problem(status, &body, 409, "VERSION_CONFLICT");
    // No condition: written whatever the version.
    let (status, body) = put(&suite, path, json!({"fields": {"token": "three"}})).await;
    assert_eq!((status, body["version"].clone()), (200, json!(3)), "{body}");

    let (_, latest) = suite.get(path).await;
    assert_eq!(
        (latest["version"].clone(), latest["fields"]["token"].clone()),
        (json!(3), json!("three"))
    );
    let (_, first) = suite.get(&format!("{path}?version=1")).await;
    assert_eq!(first["fields"]["token"], "one");
    let (status, body) = suite.get(&format!("{path}?version=9")).await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let (status, body) = suite.get(&format!("{path}?version=0")).await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "version");

    // Listings carry names, never values.
    let (status, list) = suite.get("/tenants/acme/secrets").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"names": ["tools/search"]}));

    // A version that never was is not deleted quietly.
    let (status, body) = suite.delete(&format!("{path}?version=9")).await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    // Deleting the latest version hides the secret; an older one is still there.
    assert_eq!(suite.delete(path).await.0, 204);
    let (status, body) = suite.get(path).await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let (status, _) = suite.get(&format!("{path}?version=2")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_input_is_refused_by_name_and_nothing_is_written() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["acme"]).await;
    let ok = || json!({"fields": {"token": "t"}});

    // HTTP clients resolve `.` and `..` before sending; a raw request does not.
    let admin = suite.tenant_key("acme", &["admin"]).await;
    for (path, says) in [
        ("/tenants/acme/secrets/..", "[a-z0-9]"),
        ("/tenants/acme/secrets/a/./b", "[a-z0-9]"),
        ("/tenants/acme/secrets/a/../config", "[a-z0-9]"),
    ] {
        let (status, body) = raw_put(&suite, &admin, path).await;
        assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert_eq!(body["errors"][0]["field"], "name", "{path}: {body}");
        let description = body["errors"][0]["description"].as_str().unwrap();
        assert!(description.contains(says), "{path}: {description}");
    }
    for (path, field, says) in [
        ("/tenants/acme/secrets/a%2Fb", "name", "encoded '/'"),
        ("/tenants/acme/secrets/a//b", "name", "single '/'"),
        ("/tenants/acme/secrets/a/", "name", "single '/'"),
        ("/tenants/acme/secrets/a%00b", "name", "[a-z0-9]"),
        ("/tenants/acme/secrets/a%0Db", "name", "[a-z0-9]"),
        (
            "/tenants/acme/secrets/config",
            "name",
            "the tenant's registry record",
        ),
        (
            "/tenants/acme/secrets/orgs/sales/bots/m1/llm",
            "name",
            "'orgs'",
        ),
        (
            "/tenants/acme/orgs/sales/secrets/bots/m1/llm",
            "name",
            "'bots'",
        ),
        ("/tenants/Acme/secrets/x", "tenant_id", ""),
        (
            "/tenants/acme/orgs/sales/bots/m%2F1/secrets/x",
            "bot_id",
            "encoded '/'",
        ),
    ] {
        let (status, body) = put(&suite, path, ok()).await;
        assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
        let description = body["errors"][0]["description"].as_str().unwrap();
        assert!(description.contains(says), "{path}: {description}");
    }

    // Field values checked against seed 000's catalogue, each by name.
    let bad_port = json!({"fields": {"smtp-host": "smtp.example.com", "smtp-port": "abc",
        "smtp-user": "u", "smtp-password": "p", "smtp-from": "a@example.com"}});
    let (status, body) = put(&suite, "/system/secrets/email", bad_port).await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "fields.smtp-port", "{body}");
    assert!(
        !body.to_string().contains("abc"),
        "a refused value is not repeated: {body}"
    );

    let too_many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("f{i}"), json!("v"))).collect();
    let (status, body) = put(
        &suite,
        "/tenants/acme/secrets/many",
        json!({"fields": too_many}),
    )
    .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "fields", "{body}");

    let long = "x".repeat(16 * 1024 + 1);
    let (status, body) = put(
        &suite,
        "/tenants/acme/secrets/big",
        json!({"fields": {"blob": long}}),
    )
    .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "fields.blob", "{body}");

    let (status, body) = put(&suite, "/tenants/acme/secrets/empty", json!({"fields": {}})).await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    let (status, body) = put(
        &suite,
        "/tenants/acme/secrets/neg",
        json!({"fields": {"a": "b"}, "expected_version": -1}),
    )
    .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "expected_version", "{body}");

    // Nor does a member that does not exist: the registry's answer names it.
    let (status, body) = put(
        &suite,
        "/tenants/acme/orgs/sales/bots/ghost/secrets/x",
        ok(),
    )
    .await;
    let detail = assert_problem(status, &body, 404, "NOT_FOUND");
    assert!(detail.contains("ghost"), "{detail}");
    let (status, body) = put(&suite, "/tenants/acme/orgs/nowhere/secrets/x", ok()).await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    // A tenant that does not exist holds nothing and takes nothing.
    let (status, body) = put(&suite, "/tenants/ghost/secrets/x", ok()).await;
    assert_problem(status, &body, 404, "NOT_FOUND");

    // Nothing of the above was written.
    let (_, list) = suite.get("/tenants/acme/secrets").await;
    assert_eq!(list, json!({"names": []}));
    let (_, list) = suite.get("/system/secrets").await;
    assert_eq!(list, json!({"names": []}));
}

#[tokio::test]
async fn deleting_a_member_erases_its_secrets_and_a_new_one_starts_empty() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["acme"]).await;
    let own = json!({"fields": {"provider": "p", "model": "m", "api-key": "sk-old-bot"}});
    assert_eq!(put(&suite, &format!("{BOT}/secrets/llm"), own).await.0, 201);
    let org = json!({"fields": {"token": "org-token"}});
    let org_path = "/tenants/acme/orgs/sales/secrets/tools/search";
    assert_eq!(put(&suite, org_path, org).await.0, 201);

    // The bot goes, and comes back under the same id: nothing of the old one.
    assert_eq!(suite.delete(BOT).await.0, 204);
    let bot = json!({"id": "m1", "display_name": "Member"});
    let (status, _) = suite.post("/tenants/acme/orgs/sales/bots", bot).await;
    assert_eq!(status, 201);
    let (status, body) = suite.get(&format!("{BOT}/secrets/llm")).await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let (_, list) = suite.get(&format!("{BOT}/secrets")).await;
    assert_eq!(list, json!({"names": []}));
    // Its org's secret is untouched, and still answers for it.
    let (_, found) = suite.get(&format!("{BOT}/resolve/tools/search")).await;
    assert_eq!(found["scope"], "tenants/acme/orgs/sales", "{found}");

    // Deleting the org takes everything inside it.
    assert_eq!(suite.delete("/tenants/acme/orgs/sales").await.0, 204);
    let org = json!({"id": "sales", "display_name": "Sales"});
    assert_eq!(suite.post("/tenants/acme/orgs", org).await.0, 201);
    let (status, body) = suite.get(org_path).await;
    assert_problem(status, &body, 404, "NOT_FOUND");
}
