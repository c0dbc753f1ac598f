//! The cross-tenant matrix over HTTP, generated from the route table the
//! edge publishes (`/openapi.json`, built from the same table as its router):
//! every route has a row saying what it needs, and the test fails when a
//! route is added without one.
//!
//! For each route: no credentials → 401; tenant alpha's admin key on tenant
//! beta's resources → 404 exactly as if absent (403 for operator-only
//! routes); alpha's read key on alpha's own resources → 403 where the route
//! writes or administers; and beta's data is unchanged at the end.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Suite, assert_problem, populate_tenants};

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// Served to anyone.
    Anonymous,
    /// Served to anyone, trusted only through the OAuth state it carries:
    /// a state no one issued is refused whoever sends it.
    State,
    /// An operator admin.
    Operator,
    /// A tenant principal with the read role.
    Read,
    /// The write role.
    Write,
    /// The tenant's admin role.
    Admin,
    /// A call through the token proxy that reads (GET, HEAD, OPTIONS): its
    /// tenant is the caller's, another's is named only by header.
    ProxyRead,
    /// A call through the token proxy that writes.
    ProxyWrite,
}

/// One row: method, path template, what it needs, and a body (for the
/// tenant the call is aimed at) that would succeed if the route let the
/// caller through.
struct Row {
    method: Method,
    path: String,
    needs: Needs,
    body: fn(&str) -> Option<Value>,
}

fn none(_: &str) -> Option<Value> {
    None
}

fn rows() -> Vec<Row> {
    use Needs::*;
    let row = |method: Method, path: &str, needs, body| Row {
        method,
        path: path.to_owned(),
        needs,
        body,
    };
    let mut rows = vec![
        row(Method::GET, "/health", Anonymous, none),
        row(Method::GET, "/ready", Anonymous, none),
        row(Method::GET, "/openapi.json", Anonymous, none),
        row(Method::POST, "/tenants", Operator, |_| {
            Some(json!({"id": "gamma", "display_name": "Gamma"}))
        }),
        row(Method::GET, "/admin/tenants", Operator, none),
        row(Method::GET, "/admin/health/tenants", Operator, none),
        row(Method::GET, "/tenants/{tenant_id}", Read, none),
        row(Method::PATCH, "/tenants/{tenant_id}", Admin, |_| {
            Some(json!({"version": 1, "display_name": "Taken over"}))
        }),
        row(Method::DELETE, "/tenants/{tenant_id}", Operator, none),
        row(Method::GET, "/tenants/{tenant_id}/status", Read, none),
        row(Method::GET, "/tenants/{tenant_id}/orgs", Read, none),
        row(Method::POST, "/tenants/{tenant_id}/orgs", Write, |_| {
            Some(json!({"id": "intruder", "display_name": "Intruder"}))
        }),
        row(
            Method::GET,
            "/tenants/{tenant_id}/orgs/{org_id}",
            Read,
            none,
        ),
        row(
            Method::PATCH,
            "/tenants/{tenant_id}/orgs/{org_id}",
            Write,
            |_| Some(json!({"version": 1, "display_name": "Taken over"})),
        ),
        row(
            Method::DELETE,
            "/tenants/{tenant_id}/orgs/{org_id}",
            Write,
            none,
        ),
        row(
            Method::GET,
            "/tenants/{tenant_id}/orgs/{org_id}/bots",
            Read,
            none,
        ),
        row(
            Method::POST,
            "/tenants/{tenant_id}/orgs/{org_id}/bots",
            Write,
            |_| Some(json!({"id": "intruder", "display_name": "Intruder"})),
        ),
        row(
            Method::GET,
            "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
            Read,
            none,
        ),
        row(
            Method::PATCH,
            "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
            Write,
            |_| Some(json!({"version": 1, "display_name": "Taken over"})),
        ),
        row(
            Method::DELETE,
            "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
            Write,
            none,
        ),
        row(
            Method::GET,
            "/tenants/{tenant_id}/orgs/{org_id}/users",
            Read,
            none,
        ),
        row(
            Method::POST,
            "/tenants/{tenant_id}/orgs/{org_id}/users",
            Write,
            |_| Some(json!({"id": "intruder", "display_name": "Intruder"})),
        ),
        row(
            Method::GET,
            "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}",
            Read,
            none,
        ),
        row(
            Method::PATCH,
            "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}",
            Write,
            |_| Some(json!({"version": 1, "display_name": "Taken over"})),
        ),
        row(
            Method::DELETE,
            "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}",
            Write,
            none,
        ),
        row(Method::GET, "/tenants/{tenant_id}/api-keys", Admin, none),
        row(Method::POST, "/tenants/{tenant_id}/api-keys", Admin, |_| {
            Some(json!({"display_name": "intruder", "roles": ["admin"]}))
        }),
        row(
            Method::DELETE,
            "/tenants/{tenant_id}/api-keys/{key_id}",
            Admin,
            none,
        ),
        row(Method::GET, "/admin/api-keys", Operator, none),
        row(Method::POST, "/admin/api-keys", Operator, |_| {
            Some(json!({"display_name": "intruder"}))
        }),
        row(Method::DELETE, "/admin/api-keys/{key_id}", Operator, none),
    ];
    // Secrets at every scope: the system's are the operators'.
    let put = |_: &str| Some(json!({"fields": {"token": "stolen"}}));
    for (scope, needs_read, needs_write) in [
        ("/system", Operator, Operator),
        ("/tenants/{tenant_id}", Read, Write),
        ("/tenants/{tenant_id}/orgs/{org_id}", Read, Write),
        (
            "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
            Read,
            Write,
        ),
        (
            "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}",
            Read,
            Write,
        ),
    ] {
        let item = format!("{scope}/secrets/{{name}}");
        rows.push(row(
            Method::GET,
            &format!("{scope}/secrets"),
            needs_read,
            none,
        ));
        rows.push(row(Method::GET, &item, needs_read, none));
        rows.push(row(Method::PUT, &item, needs_write, put));
        rows.push(row(Method::DELETE, &item, needs_write, none));
        if scope != "/system" {
            rows.push(row(
                Method::GET,
                &format!("{scope}/resolve/{{name}}"),
                needs_read,
                none,
            ));
        }
    }
    // Connections, over the broker: a tenant's, with the shipped catalog's
    // API-key integration (`{integration}` is `openai`).
    rows.push(row(
        Method::POST,
        "/oauth/authorize/{integration}",
        Write,
        |t| Some(json!({"tenant_id": t})),
    ));
    rows.push(row(
        Method::GET,
        "/oauth/callback/{integration}",
        State,
        none,
    ));
    // Connections at every owner scope.
    for owner in MEMBER_SCOPES {
        rows.push(row(
            Method::GET,
            &format!("{owner}/integrations"),
            Read,
            none,
        ));
        let credentials = format!("{owner}/integrations/{{integration}}/credentials");
        rows.push(row(Method::GET, &credentials, Read, none));
        rows.push(row(Method::POST, &credentials, Write, |_| {
            Some(json!({"credentials": {"api_key": {"key": "stolen"}}}))
        }));
        rows.push(row(Method::DELETE, &credentials, Write, none));
        rows.push(row(
            Method::POST,
            &format!("{owner}/integrations/{{integration}}/refresh"),
            Write,
            none,
        ));
    }
    // Custom providers: the tenant admin's to change (`{integration}` is
    // the custom provider `crm` there).
    rows.push(row(
        Method::GET,
        "/tenants/{tenant_id}/providers",
        Read,
        none,
    ));
    rows.push(row(
        Method::POST,
        "/tenants/{tenant_id}/providers",
        Admin,
        |_| Some(json!({"integration": "intruder", "definition": provider_definition("Intruder")})),
    ));
    let provider = "/tenants/{tenant_id}/providers/{integration}";
    rows.push(row(Method::GET, provider, Read, none));
    rows.push(row(Method::PUT, provider, Admin, |_| {
        Some(json!({"definition": provider_definition("Taken over"), "expected_version": 1}))
    }));
    rows.push(row(Method::DELETE, provider, Admin, none));
    // The token proxy: every method of one route.
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        rows.push(row(method, PROXIED, ProxyRead, none));
    }
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        rows.push(row(method, PROXIED, ProxyWrite, none));
    }
    rows
}

/// The token proxy's route.
const PROXIED: &str = "/proxy/{integration}/{path}";

/// The owners connections belong to, as route prefixes.
const MEMBER_SCOPES: [&str; 4] = [
    "/tenants/{tenant_id}",
    "/tenants/{tenant_id}/orgs/{org_id}",
    "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
    "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}",
];

/// The custom provider alpha and beta each have.
const PROVIDER: &str = "crm";

/// A custom provider's definition that the default egress policy admits
/// (a public address, so no name resolution is needed).
fn provider_definition(display_name: &str) -> Value {
    json!({
        "display_name": display_name,
        "auth_mode": "oauth2_authorization_code",
        "authorization_url": "https://93.184.215.14/authorize",
        "token_url": "https://93.184.215.14/token",
        "client_auth": "basic",
    })
}

/// The integration every tenant of the matrix has a connection to.
const INTEGRATION: &str = "openai";

/// The secret every scope of alpha and beta (and the system) holds; two
/// segments, so the routes serving names with slashes are the ones checked.
const SECRET: &str = "tools/search";

/// Every scope's secret path of tenant `t`.
fn secret_scopes(t: &str) -> Vec<String> {
    vec![
        format!("/tenants/{t}"),
        format!("/tenants/{t}/orgs/sales"),
        format!("/tenants/{t}/orgs/sales/bots/m1"),
        format!("/tenants/{t}/orgs/sales/users/m1"),
    ]
}

/// `(METHOD, path)` of every operation in the published document.
async fn published_routes(suite: &Suite) -> BTreeSet<(String, String)> {
    let (status, doc) = suite.get("/openapi.json").await;
    assert_eq!(status, 200);
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Beta's tenant, org, bot, user and a key, and alpha's own copies (for the
/// read-key checks). Answers beta's key id and alpha's.
async fn populate(suite: &Suite) -> (String, String) {
    populate_tenants(suite, &["alpha", "beta"]).await;
    let mut key_ids = Vec::new();
    for t in ["alpha", "beta"] {
        let (status, key) = suite
            .post(
                &format!("/tenants/{t}/api-keys"),
                json!({"display_name": "existing", "roles": ["read"]}),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        key_ids.push(key["api_key"]["key_id"].as_str().unwrap().to_owned());
        let (status, answer) = suite
            .post(
                &format!("/tenants/{t}/integrations/{INTEGRATION}/credentials"),
                json!({"credentials": {"api_key": {"key": format!("{t}-api-key")}}}),
            )
            .await;
        assert_eq!(status, 200, "{t}'s connection: {answer}");
        for owner in &MEMBER_SCOPES[1..] {
            let path = concrete(owner, t, "");
            let (status, answer) = suite
                .post(
                    &format!("{path}/integrations/{INTEGRATION}/credentials"),
                    json!({"credentials": {"api_key": {"key": format!("{t}-member-key")}}}),
                )
                .await;
            assert_eq!(status, 200, "{path}'s connection: {answer}");
        }
        let (status, answer) = suite
            .post(
                &format!("/tenants/{t}/providers"),
                json!({"integration": PROVIDER, "definition": provider_definition("CRM")}),
            )
            .await;
        assert_eq!(status, 201, "{t}'s custom provider: {answer}");
        for scope in secret_scopes(t) {
            let body = json!({"fields": {"token": format!("{t}-token")}, "expected_version": 0});
            let (status, answer) = suite
                .call(
                    Method::PUT,
                    &format!("{scope}/secrets/{SECRET}"),
                    Some(body),
                )
                .await;
            assert_eq!(status, 201, "{scope}: {answer}");
        }
    }
    let (status, answer) = suite
        .call(
            Method::PUT,
            &format!("/system/secrets/{SECRET}"),
            Some(json!({"fields": {"token": "system-token"}})),
        )
        .await;
    assert_eq!(status, 201, "system: {answer}");
    (key_ids[1].clone(), key_ids[0].clone())
}

fn concrete(template: &str, tenant: &str, key_id: &str) -> String {
    template
        .replace("{tenant_id}", tenant)
        .replace("{org_id}", "sales")
        .replace("{bot_id}", "m1")
        .replace("{user_id}", "m1")
        .replace("{key_id}", key_id)
        .replace("{name}", SECRET)
        .replace(
            "/providers/{integration}",
            &format!("/providers/{PROVIDER}"),
        )
        .replace("{integration}", INTEGRATION)
        .replace("{path}", "v1/models")
}

/// A proxied call as `client` with `headers`: the status and the problem
/// (`Null` for HEAD, which has no body).
async fn proxied(
    suite: &Suite,
    client: &reqwest::Client,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client.request(method.clone(), suite.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The proxy's row: no credentials → 401; alpha naming beta's connection,
/// by owner or by name → 404 as if absent; alpha's reader writing → 403.
async fn check_proxied(
    suite: &Suite,
    row: &Row,
    alpha_admin: &reqwest::Client,
    alpha_reader: &reqwest::Client,
) {
    let label = format!("{} {}", row.method, row.path);
    let path = concrete(&row.path, "alpha", "");
    let head = row.method == Method::HEAD;
    let (status, body) = proxied(suite, &suite.anonymous, &row.method, &path, &[]).await;
    if head {
        assert_eq!(status, 401, "{label}");
    } else {
        assert_problem(status, &body, 401, "UNAUTHENTICATED");
    }
    let beta_connection = format!("tenants/beta/integrations/{INTEGRATION}");
    for header in [
        ("locksmith-owner", "tenants/beta"),
        ("locksmith-connection", beta_connection.as_str()),
    ] {
        let (status, body) = proxied(suite, alpha_admin, &row.method, &path, &[header]).await;
        if head {
            assert_eq!(status, 404, "{label} {header:?}");
        } else {
            let detail = assert_problem(status, &body, 404, "NOT_FOUND");
            assert_eq!(detail, "connection not found", "{label}");
        }
    }
    if row.needs == Needs::ProxyWrite {
        let (status, body) = proxied(suite, alpha_reader, &row.method, &path, &[]).await;
        let detail = assert_problem(status, &body, 403, "PERMISSION_DENIED");
        assert_eq!(detail, "this call needs the write role", "{label}");
    }
}

/// Everything of beta an operator can read, to compare before and after.
async fn snapshot(suite: &Suite) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/tenants/beta",
        "/tenants/beta/orgs",
        "/tenants/beta/orgs/sales",
        "/tenants/beta/orgs/sales/bots",
        "/tenants/beta/orgs/sales/bots/m1",
        "/tenants/beta/orgs/sales/users",
        "/tenants/beta/orgs/sales/users/m1",
        "/tenants/beta/api-keys",
        "/admin/api-keys",
        "/tenants/beta/integrations",
        "/tenants/beta/integrations/openai/credentials",
        "/tenants/beta/orgs/sales/integrations",
        "/tenants/beta/orgs/sales/integrations/openai/credentials",
        "/tenants/beta/orgs/sales/bots/m1/integrations",
        "/tenants/beta/orgs/sales/bots/m1/integrations/openai/credentials",
        "/tenants/beta/orgs/sales/users/m1/integrations",
        "/tenants/beta/orgs/sales/users/m1/integrations/openai/credentials",
        "/tenants/beta/providers",
        "/tenants/beta/providers/crm",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(secret_scopes("beta").into_iter().flat_map(|scope| {
        [
            format!("{scope}/secrets"),
            format!("{scope}/secrets/{SECRET}"),
        ]
    }))
    .chain([format!("/system/secrets/{SECRET}")])
    {
        let path = path.as_str();
        let (status, mut body) = suite.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        // Keys' last use moves as the suite itself uses them.
        if let Some(keys) = body["api_keys"].as_array_mut() {
            for k in keys {
                k.as_object_mut().unwrap().remove("last_used_at");
            }
        }
        out.push(body);
    }
    out
}

#[tokio::test]
async fn every_route_confines_tenants_and_roles() {
    let suite = Suite::start().await;
    let (beta_key_id, alpha_key_id) = populate(&suite).await;

    // The table covers exactly the published routes.
    let table: BTreeSet<(String, String)> = rows()
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    let published = published_routes(&suite).await;
    assert_eq!(
        published.difference(&table).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes without a row in the matrix"
    );
    assert_eq!(
        table.difference(&published).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "rows for routes that are not published"
    );

    let alpha_admin = suite.client_as(&suite.tenant_key("alpha", &["admin"]).await);
    let alpha_reader = suite.client_as(&suite.tenant_key("alpha", &["read"]).await);
    let before = snapshot(&suite).await;

    for row in rows() {
        let label = format!("{} {}", row.method, row.path);
        let on_beta = concrete(&row.path, "beta", &beta_key_id);
        let on_alpha = concrete(&row.path, "alpha", &alpha_key_id);
        if row.needs == Needs::State {
            // Whoever sends it, a state the broker never issued is refused
            // with the same answer (alpha's admin key changes nothing).
            let forged = format!("{on_beta}?state={}&code=c", "s".repeat(43));
            for client in [&suite.anonymous, &alpha_admin, &alpha_reader] {
                let (status, body) = suite
                    .call_with(client, row.method.clone(), &forged, None)
                    .await;
                let detail = assert_problem(status, &body, 400, "INVALID_ARGUMENT");
                assert_eq!(detail, "state is unknown", "{label}");
                assert_eq!(body["errors"][0]["field"], "state", "{label}: {body}");
            }
            continue;
        }
        if matches!(row.needs, Needs::ProxyRead | Needs::ProxyWrite) {
            check_proxied(&suite, &row, &alpha_admin, &alpha_reader).await;
            continue;
        }
        if row.needs == Needs::Anonymous {
            let (status, _) = suite
                .call_with(&suite.anonymous, row.method.clone(), &on_beta, None)
                .await;
            assert_eq!(status, 200, "{label} anonymously");
            continue;
        }

        // No credentials.
        let (status, body) = suite
            .call_with(
                &suite.anonymous,
                row.method.clone(),
                &on_beta,
                (row.body)("beta"),
            )
            .await;
        assert_problem(status, &body, 401, "UNAUTHENTICATED");

        // Alpha's admin on beta's resources.
        let (status, body) = suite
            .call_with(
                &alpha_admin,
                row.method.clone(),
                &on_beta,
                (row.body)("beta"),
            )
            .await;
        if row.needs == Needs::Operator {
            let detail = assert_problem(status, &body, 403, "PERMISSION_DENIED");
            assert_eq!(detail, "this call needs an operator admin key", "{label}");
        } else {
            let detail = assert_problem(status, &body, 404, "NOT_FOUND");
            assert_eq!(detail, "tenant 'beta' does not exist", "{label}");
        }

        // Alpha's reader on alpha's own resources.
        let (status, body) = suite
            .call_with(
                &alpha_reader,
                row.method.clone(),
                &on_alpha,
                (row.body)("alpha"),
            )
            .await;
        match row.needs {
            Needs::Read => assert_eq!(status, 200, "{label} with a read key: {body}"),
            Needs::Operator => {
                assert_problem(status, &body, 403, "PERMISSION_DENIED");
            }
            Needs::Write | Needs::Admin => {
                let detail = assert_problem(status, &body, 403, "PERMISSION_DENIED");
                let role = if row.needs == Needs::Write {
                    "write"
                } else {
                    "admin"
                };
                assert_eq!(
                    detail,
                    format!("this call needs the {role} role"),
                    "{label}"
                );
            }
            Needs::Anonymous | Needs::State | Needs::ProxyRead | Needs::ProxyWrite => {
                unreachable!()
            }
        }
    }

    assert_eq!(snapshot(&suite).await, before, "beta's data changed");
    // The same tenant id unknown to everyone answers the same 404 text:
    // beta's existence did not leak.
    let (status, body) = suite
        .call_with(&alpha_admin, Method::GET, "/tenants/nobody", None)
        .await;
    let detail = assert_problem(status, &body, 404, "NOT_FOUND");
    assert_eq!(detail, "tenant 'nobody' does not exist");
}
