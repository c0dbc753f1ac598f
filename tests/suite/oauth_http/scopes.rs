//! Over HTTP, a tenant's custom providers (created, read, changed and
//! deleted by its admin, invisible to other tenants) and the connections of
//! its orgs, bots and users (each owner's own, invisible to other tenants).

use reqwest::Method;
use serde_json::{Value, json};

use super::oidc_suite;
use crate::harness::{Suite, assert_problem, populate_tenants};

/// A custom provider's definition whose token endpoint is `token_url`.
fn crm(token_url: &str) -> Value {
    json!({
        "display_name": "CRM",
        "auth_mode": "oauth2_authorization_code",
        "authorization_url": "https://127.0.0.1:9/authorize",
        "token_url": token_url,
        "client_auth": "basic",
        "default_scopes": ["contacts"],
    })
}

#[tokio::test]
async fn custom_providers_over_http_are_the_tenant_admins_and_invisible_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, _) = oidc_suite(&dir).await;
    let admin = suite.client_as(&suite.tenant_key("acme", &["admin"]).await);
    let writer = suite.client_as(&suite.tenant_key("acme", &["write"]).await);
    let reader = suite.client_as(&suite.tenant_key("acme", &["read"]).await);
    let beta = suite.client_as(&suite.tenant_key("beta", &["admin"]).await);
    let definition = crm("https://127.0.0.1:9/token");

    // Created by the admin: 201 with the provider and where it lives.
    let resp = admin
        .post(suite.url("/tenants/acme/providers"))
        .json(&json!({"integration": "crm", "definition": definition}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(
        resp.headers()[reqwest::header::LOCATION],
        "/tenants/acme/providers/crm"
    );
    let made: Value = resp.json().await.unwrap();
    assert_eq!(made["name"], "tenants/acme/providers/crm");
    assert_eq!(made["integration"], "crm");
    assert_eq!(made["definition"], definition);
    assert_eq!(made["version"], 1);
    assert_eq!(made["created_at"], made["updated_at"]);

    // Not for a tenant nobody made, even by an operator.
    let (status, body) = suite
        .post(
            "/tenants/nobody/providers",
            json!({"integration": "crm", "definition": definition}),
        )
        .await;
    assert_eq!(
        assert_problem(status, &body, 404, "NOT_FOUND"),
        "tenant 'nobody' does not exist"
    );

    // Read with the read role, listed by integration.
    let (status, shown) = suite
        .call_with(&reader, Method::GET, "/tenants/acme/providers/crm", None)
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown, made);
    let (status, listed) = suite
        .call_with(&reader, Method::GET, "/tenants/acme/providers", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed, json!({"providers": [made]}));

    // Changing needs the admin role.
    let (status, body) = suite
        .call_with(
            &writer,
            Method::POST,
            "/tenants/acme/providers",
            Some(json!({"integration": "crm2", "definition": definition})),
        )
        .await;
    assert_eq!(
        assert_problem(status, &body, 403, "PERMISSION_DENIED"),
        "this call needs the admin role"
    );

    // Bad definitions name the field as sent; nothing is stored.
    for (bad, field, description) in [
        (
            crm("http://127.0.0.1:9/token"),
            "definition.token_url",
            "must be an https URL",
        ),
        (
            crm("https://169.254.169.254/latest/meta-data/iam"),
            "definition.token_url",
            "is refused by the egress policy: 169.254.169.254 is in 169.254.169.254 (cloud metadata)",
        ),
    ] {
        let (status, body) = suite
            .call_with(
                &admin,
                Method::POST,
                "/tenants/acme/providers",
                Some(json!({"integration": "sneaky", "definition": bad})),
            )
            .await;
        assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
        assert_eq!(body["errors"][0]["description"], description, "{body}");
    }
    let mut typo = crm("https://127.0.0.1:9/token");
    typo["tokne_url"] = json!("https://127.0.0.1:9/token");
    for (body, field) in [
        (
            json!({"integration": "sneaky", "definition": typo}),
            "definition.tokne_url",
        ),
        (
            json!({"integration": "Not An Id", "definition": definition}),
            "integration",
        ),
        (
            json!({"integration": "sneaky", "definition": "{}"}),
            "definition",
        ),
    ] {
        let (status, answer) = suite
            .call_with(&admin, Method::POST, "/tenants/acme/providers", Some(body))
            .await;
        assert_problem(status, &answer, 400, "INVALID_ARGUMENT");
        assert_eq!(answer["errors"][0]["field"], field, "{answer}");
    }
    let (status, body) = suite
        .call_with(&admin, Method::GET, "/tenants/acme/providers/sneaky", None)
        .await;
    assert_eq!(
        assert_problem(status, &body, 404, "NOT_FOUND"),
        "custom provider not found"
    );

    // Taken ids: its own, and the shipped catalog's.
    for (id, detail) in [
        ("crm", "integration `crm` already exists"),
        (
            "oidc",
            "integration `oidc` already exists in the shipped catalog",
        ),
    ] {
        let (status, body) = suite
            .call_with(
                &admin,
                Method::POST,
                "/tenants/acme/providers",
                Some(json!({"integration": id, "definition": definition})),
            )
            .await;
        assert_eq!(assert_problem(status, &body, 409, "ALREADY_EXISTS"), detail);
    }

    // Tenant beta: every route on acme's provider is 404, as if absent, and
    // its own listing does not show it.
    let changed = crm("https://127.0.0.1:10/token");
    for (method, path, body) in [
        (Method::GET, "/tenants/acme/providers", None),
        (
            Method::POST,
            "/tenants/acme/providers",
            Some(json!({"integration": "crm3", "definition": definition})),
        ),
        (Method::GET, "/tenants/acme/providers/crm", None),
        (
            Method::PUT,
            "/tenants/acme/providers/crm",
            Some(json!({"definition": changed, "expected_version": 1})),
        ),
        (Method::DELETE, "/tenants/acme/providers/crm", None),
    ] {
        let (status, answer) = suite.call_with(&beta, method.clone(), path, body).await;
        assert_eq!(
            assert_problem(status, &answer, 404, "NOT_FOUND"),
            "tenant 'acme' does not exist",
            "{method} {path}"
        );
    }
    let (status, body) = suite
        .call_with(&beta, Method::GET, "/tenants/beta/providers/crm", None)
        .await;
    assert_eq!(
        assert_problem(status, &body, 404, "NOT_FOUND"),
        "custom provider not found"
    );
    let (status, listed) = suite
        .call_with(&beta, Method::GET, "/tenants/beta/providers", None)
        .await;
    assert_eq!((status, listed), (200, json!({"providers": []})));

    // Updates are check-and-set on the version, and checked as creates.
    let put = |definition: &Value, version: u64| {
        Some(json!({"definition": definition, "expected_version": version}))
    };
    let (status, body) = suite
        .call_with(
            &admin,
            Method::PUT,
            "/tenants/acme/providers/crm",
            put(&changed, 5),
        )
        .await;
    assert_problem(status, &body, 409, "VERSION_CONFLICT");
    let (status, body) = suite
        .call_with(
            &admin,
            Method::PUT,
            "/tenants/acme/providers/crm",
            put(&crm("http://127.0.0.1:10/token"), 1),
        )
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "definition.token_url");
    let (status, updated) = suite
        .call_with(
            &admin,
            Method::PUT,
            "/tenants/acme/providers/crm",
            put(&changed, 1),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["definition"], changed);
    assert_eq!(updated["created_at"], made["created_at"]);

    // Deletes: check-and-set when asked, then gone.
    let (status, body) = suite
        .call_with(
            &admin,
            Method::DELETE,
            "/tenants/acme/providers/crm?expected_version=1",
            None,
        )
        .await;
    assert_problem(status, &body, 409, "VERSION_CONFLICT");
    let (status, body) = suite
        .call_with(
            &admin,
            Method::DELETE,
            "/tenants/acme/providers/crm?expected_version=0",
            None,
        )
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "expected_version");
    let (status, _) = suite
        .call_with(
            &admin,
            Method::DELETE,
            "/tenants/acme/providers/crm?expected_version=2",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = suite
        .call_with(&admin, Method::GET, "/tenants/acme/providers/crm", None)
        .await;
    assert_eq!(
        assert_problem(status, &body, 404, "NOT_FOUND"),
        "custom provider not found"
    );
    let (status, body) = suite
        .call_with(&admin, Method::DELETE, "/tenants/acme/providers/crm", None)
        .await;
    assert_problem(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn connections_of_orgs_bots_and_users_are_their_own_and_invisible_to_others() {
    let suite = Suite::start().await;
    populate_tenants(&suite, &["acme", "beta"]).await;
    let writer = suite.client_as(&suite.tenant_key("acme", &["write"]).await);
    let reader = suite.client_as(&suite.tenant_key("acme", &["read"]).await);
    let beta = suite.client_as(&suite.tenant_key("beta", &["admin"]).await);
    let store = |key: &str| Some(json!({"credentials": {"api_key": {"key": key}}}));

    for owner in [
        "tenants/acme/orgs/sales",
        "tenants/acme/orgs/sales/bots/m1",
        "tenants/acme/orgs/sales/users/m1",
    ] {
        let name = format!("{owner}/integrations/openai");
        let item = format!("/{name}/credentials");
        let secret = format!("sk-{}", owner.len());
        let (status, stored) = suite
            .call_with(&writer, Method::POST, &item, store(&secret))
            .await;
        assert_eq!(status, 200, "{owner}: {stored}");
        assert_eq!(stored["name"], name);
        assert_eq!(stored["auth_mode"], "api_key");
        assert!(!stored.to_string().contains(&secret), "{stored}");
        let (status, shown) = suite.call_with(&reader, Method::GET, &item, None).await;
        assert_eq!(status, 200, "{shown}");
        // The store's answer has the time to the nanosecond; the record, to the second.
        let times = |v: &Value| v["created_at"].as_str().unwrap()[..19].to_owned();
        assert_eq!(times(&shown), times(&stored));
        let mut same = stored.clone();
        same["created_at"] = shown["created_at"].clone();
        same["updated_at"] = shown["updated_at"].clone();
        assert_eq!(shown, same);
        // Listed at its owner only.
        let (status, listed) = suite
            .call_with(
                &reader,
                Method::GET,
                &format!("/{owner}/integrations"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed, json!({"connections": [shown]}));

        // Writing needs the write role.
        let (status, body) = suite
            .call_with(&reader, Method::POST, &item, store("sk-reader"))
            .await;
        assert_eq!(
            assert_problem(status, &body, 403, "PERMISSION_DENIED"),
            "this call needs the write role"
        );
        // Tenant beta: every route is 404, as if absent.
        for (method, path, body) in [
            (Method::GET, format!("/{owner}/integrations"), None),
            (Method::GET, item.clone(), None),
            (Method::POST, item.clone(), store("sk-beta")),
            (Method::DELETE, item.clone(), None),
            (Method::POST, format!("/{name}/refresh"), None),
        ] {
            let (status, answer) = suite.call_with(&beta, method.clone(), &path, body).await;
            assert_eq!(
                assert_problem(status, &answer, 404, "NOT_FOUND"),
                "tenant 'acme' does not exist",
                "{method} {path}"
            );
        }
        // Beta's own member of the same ids has nothing.
        let (status, listed) = suite
            .call_with(
                &beta,
                Method::GET,
                &format!("/{}/integrations", owner.replacen("acme", "beta", 1)),
                None,
            )
            .await;
        assert_eq!((status, listed), (200, json!({"connections": []})));
    }
    // The tenant's own connections are others still.
    let (status, listed) = suite
        .call_with(&reader, Method::GET, "/tenants/acme/integrations", None)
        .await;
    assert_eq!((status, listed), (200, json!({"connections": []})));

    // Ids are checked and named as sent.
    for (method, path, field) in [
        (
            Method::GET,
            "/tenants/acme/orgs/Sales/integrations",
            "org_id",
        ),
        (
            Method::GET,
            "/tenants/acme/orgs/sales/bots/M_1/integrations",
            "bot_id",
        ),
        (
            Method::GET,
            "/tenants/acme/orgs/sales/users/-u/integrations/openai/credentials",
            "user_id",
        ),
        (
            Method::POST,
            "/tenants/acme/orgs/sales/bots/m1/integrations/Open_AI/refresh",
            "integration",
        ),
    ] {
        let (status, body) = suite.call_with(&writer, method, path, None).await;
        assert_problem(status, &body, 400, "INVALID_ARGUMENT");
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
    }

    // Deleted (an API key has nothing to revoke at the provider): gone.
    for owner in [
        "tenants/acme/orgs/sales",
        "tenants/acme/orgs/sales/bots/m1",
        "tenants/acme/orgs/sales/users/m1",
    ] {
        let item = format!("/{owner}/integrations/openai/credentials");
        let (status, body) = suite.call_with(&writer, Method::DELETE, &item, None).await;
        assert_eq!(status, 204, "{owner}: {body}");
        let (status, body) = suite.call_with(&reader, Method::GET, &item, None).await;
        assert_eq!(
            assert_problem(status, &body, 404, "NOT_FOUND"),
            "connection not found"
        );
        let (status, listed) = suite
            .call_with(
                &reader,
                Method::GET,
                &format!("/{owner}/integrations"),
                None,
            )
            .await;
        assert_eq!((status, listed), (200, json!({"connections": []})));
    }
}

#[tokio::test]
async fn a_deleted_tenants_custom_providers_do_not_come_back_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, _) = oidc_suite(&dir).await;
    let definition = crm("https://127.0.0.1:9/token");
    for tenant in ["acme", "beta"] {
        let (status, body) = suite
            .post(
                &format!("/tenants/{tenant}/providers"),
                json!({"integration": "crm", "definition": definition}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    assert_eq!(suite.delete("/tenants/acme").await.0, 204);
    crate::harness::create_tenant(&suite, "acme").await;

    // The new acme starts without the old one's provider…
    let (status, listed) = suite.get("/tenants/acme/providers").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed, json!({"providers": []}));
    let (status, body) = suite.get("/tenants/acme/providers/crm").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    // …and beta's is untouched.
    let (status, kept) = suite.get("/tenants/beta/providers/crm").await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["definition"], definition);
}
