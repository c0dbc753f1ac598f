//! Orgs, bots and users inside tenants, and isolation between tenants.

use serde_json::json;

use crate::harness::{Suite, assert_problem, create_tenant};

#[tokio::test]
async fn orgs_bots_and_users_nest_and_cascade() {
    let suite = Suite::start().await;
    create_tenant(&suite, "prod").await;
    let (status, org) = suite
        .post(
            "/tenants/prod/orgs",
            json!({"id": "acme", "display_name": "Acme"}),
        )
        .await;
    assert_eq!(status, 201, "{org}");
    assert_eq!(org["org_id"], "acme");
    let (status, bot) = suite
        .post(
            "/tenants/prod/orgs/acme/bots",
            json!({"id": "helper", "display_name": "Helper"}),
        )
        .await;
    assert_eq!(status, 201, "{bot}");
    let uuid = "550e8400-e29b-41d4-a716-446655440000";
    let (status, user) = suite
        .post(
            "/tenants/prod/orgs/acme/users",
            json!({"id": uuid, "display_name": "Ann", "email": "ann@acme.example.com"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "ann@acme.example.com");

    let (_, bots) = suite.get("/tenants/prod/orgs/acme/bots").await;
    assert_eq!(bots["items"][0]["id"], "helper");
    let (_, users) = suite.get("/tenants/prod/orgs/acme/users").await;
    assert_eq!(users["items"][0]["id"], uuid);

    let (status, patched) = suite
        .patch(
            &format!("/tenants/prod/orgs/acme/users/{uuid}"),
            json!({"version": 1, "email": null}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched.get("email").is_none(), "{patched}");

    // Bots have no email: refused rather than silently dropped.
    let (status, body) = suite
        .post(
            "/tenants/prod/orgs/acme/bots",
            json!({"id": "b2", "display_name": "B", "email": "b@x.com"}),
        )
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");

    // Deleting the org takes its bots and users with it.
    assert_eq!(suite.delete("/tenants/prod/orgs/acme").await.0, 204);
    let (status, body) = suite.get("/tenants/prod/orgs/acme/bots/helper").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
    let (status, body) = suite.get("/tenants/prod/orgs/acme/bots").await;
    assert_problem(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn members_need_an_existing_parent() {
    let suite = Suite::start().await;
    let (status, body) = suite
        .post(
            "/tenants/ghost/orgs",
            json!({"id": "o", "display_name": "O"}),
        )
        .await;
    let detail = assert_problem(status, &body, 404, "NOT_FOUND");
    assert!(detail.contains("tenant 'ghost'"), "{detail}");
    create_tenant(&suite, "prod").await;
    let (status, body) = suite
        .post(
            "/tenants/prod/orgs/ghost/users",
            json!({"id": "u", "display_name": "U"}),
        )
        .await;
    let detail = assert_problem(status, &body, 404, "NOT_FOUND");
    assert!(detail.contains("org 'ghost'"), "{detail}");
}

#[tokio::test]
async fn a_second_tenant_cannot_reach_the_first_ones_members() {
    let suite = Suite::start().await;
    create_tenant(&suite, "alpha").await;
    create_tenant(&suite, "beta").await;
    suite
        .post(
            "/tenants/alpha/orgs",
            json!({"id": "acme", "display_name": "Acme"}),
        )
        .await;
    suite
        .post(
            "/tenants/alpha/orgs/acme/bots",
            json!({"id": "bot", "display_name": "Bot"}),
        )
        .await;
    suite
        .post(
            "/tenants/alpha/orgs/acme/users",
            json!({"id": "ann", "display_name": "Ann"}),
        )
        .await;

    // Every member route, addressed through tenant beta, finds nothing of alpha's.
    for path in [
        "/tenants/beta/orgs/acme",
        "/tenants/beta/orgs/acme/bots",
        "/tenants/beta/orgs/acme/bots/bot",
        "/tenants/beta/orgs/acme/users",
        "/tenants/beta/orgs/acme/users/ann",
    ] {
        let (status, body) = suite.get(path).await;
        assert_problem(status, &body, 404, "NOT_FOUND");
    }
    let (_, orgs) = suite.get("/tenants/beta/orgs").await;
    assert_eq!(orgs["items"], json!([]));
    for (path, body) in [
        (
            "/tenants/beta/orgs/acme",
            json!({"version": 1, "display_name": "Hijack"}),
        ),
        (
            "/tenants/beta/orgs/acme/bots/bot",
            json!({"version": 1, "display_name": "Hijack"}),
        ),
        (
            "/tenants/beta/orgs/acme/users/ann",
            json!({"version": 1, "display_name": "Hijack"}),
        ),
    ] {
        let (status, problem) = suite.patch(path, body).await;
        assert_problem(status, &problem, 404, "NOT_FOUND");
        let (status, problem) = suite.delete(path).await;
        assert_problem(status, &problem, 404, "NOT_FOUND");
    }
    // Beta may use the same ids for its own members without touching alpha's.
    let (status, _) = suite
        .post(
            "/tenants/beta/orgs",
            json!({"id": "acme", "display_name": "Beta's Acme"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        suite.get("/tenants/alpha/orgs/acme").await.1["display_name"],
        "Acme"
    );
    assert_eq!(
        suite.get("/tenants/alpha/orgs/acme/bots/bot").await.1["version"],
        1
    );
    assert_eq!(
        suite.get("/tenants/alpha/orgs/acme/users/ann").await.1["display_name"],
        "Ann"
    );

    // Deleting beta leaves alpha whole.
    assert_eq!(suite.delete("/tenants/beta").await.0, 204);
    assert_eq!(suite.get("/tenants/alpha/orgs/acme/users/ann").await.0, 200);
}
