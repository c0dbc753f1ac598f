//! Per-tenant connection health (`GET /admin/health/tenants`, the broker's
//! ListTenantHealth) and owner existence checks on StartAuthorization and
//! StoreCredentials, end to end.
//!
//! Statuses are reached the way connections really get them: tokens
//! imported with an expiry (and with or without a refresh token), then
//! refreshes against the real OAuth server (`oauth_server.rs`, behind a TLS
//! front): an unknown refresh token is `invalid_grant` (needs_reauth), an
//! injected 503 a transient failure (refresh_failing).

use locksmith_auth::{Principal, Role, Roles};
use locksmith_domain::TenantId;
use locksmith_egress::EgressPolicy;
use locksmith_errors::ApiError;
use locksmith_proto::broker::v1::{
    self as pb, o_auth_broker_service_client::OAuthBrokerServiceClient,
    store_credentials_request::Credentials,
};
use locksmith_proto::credstore::v1 as cs;
use locksmith_tls::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

use crate::broker_flows::tls_front;
use crate::harness::{
    BrokerSetup, Suite, assert_problem, create_tenant, load_tls, populate_tenants,
};
use crate::oauth_server::{Behaviour, ClientSpec, RegisteredClient, oauth_server};

/// A catalog of two authorization-code entries on the front (`oidc`,
/// `oidc2`) and an API-key entry (`keys`).
fn catalog(port: u16) -> String {
    let code = |id: &str| {
        format!(
            r#"
[providers.{id}]
display_name = "Test OAuth server ({id})"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://localhost:{port}/auth"
token_url = "https://localhost:{port}/token"
client_auth = "basic"
pkce = true
default_scopes = ["read"]
"#
        )
    };
    format!(
        r#"version = 1
{}{}
[providers.keys]
display_name = "An API-key service"
auth_mode = "api_key"
[providers.keys.api]
base_url = "https://api.keys.example"
credential = {{ location = "bearer" }}
"#,
        code("oidc"),
        code("oidc2")
    )
}

/// The suite with the catalog above, the OAuth server's client as the
/// system OAuth app of both code entries, loopback allow-listed for the
/// egress guard. `front`: whether to start the OAuth server (and its
/// front) at all; without it the code entries point at a closed port.
async fn health_suite(dir: &TempDir, front: bool) -> (Suite, Option<RegisteredClient>) {
    let (port, egress) = if front {
        let server = oauth_server();
        let issuer = reqwest::Url::parse(&server.issuer).unwrap();
        let upstream = format!("{}:{}", issuer.host_str().unwrap(), issuer.port().unwrap())
            .parse()
            .unwrap();
        let (port, ca) = tls_front(upstream, dir).await;
        let egress = EgressPolicy {
            allow_cidrs: vec!["127.0.0.0/8".into()],
            ca_files: vec![ca],
            ..EgressPolicy::default()
        };
        (port, Some(egress))
    } else {
        (9, None)
    };
    let suite = Suite::start_with_broker(BrokerSetup {
        catalog: Some(catalog(port)),
        egress,
        return_urls: Default::default(),
    })
    .await;
    let client = match front {
        true => Some(
            oauth_server()
                .register_client(&ClientSpec::code_flow(&suite.url("/oauth/callback/oidc")))
                .await,
        ),
        false => None,
    };
    let (id, secret) = client
        .as_ref()
        .map(|c| (c.client_id.clone(), c.client_secret.clone()))
        .unwrap_or_else(|| ("unused-client".into(), "unused-secret".into()));
    for integration in ["oidc", "oidc2"] {
        let (status, body) = suite
            .call(
                Method::PUT,
                &format!("/system/secrets/oauth-apps/{integration}"),
                Some(json!({"fields": {"client-id": id, "client-secret": secret}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    (suite, client)
}

fn operator() -> Principal {
    Principal::Operator {
        subject: "api-key:broker-health-test".into(),
    }
}

fn admin_of(tenant: &str) -> Principal {
    Principal::Tenant {
        tenant: TenantId::parse(tenant).unwrap(),
        roles: Roles::of([Role::Admin]),
        subject: format!("api-key:{tenant}-admin"),
    }
}

/// The broker as the edge calls it, forwarding `principal`.
struct Broker {
    client: OAuthBrokerServiceClient<Channel>,
    principal: Principal,
}

impl Broker {
    fn new(suite: &Suite, principal: Principal) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(suite.broker.url.clone())
            .unwrap()
            .tls_config(load_tls(suite.pki.path(), ServiceName::Edge).client_tls("localhost"))
            .unwrap()
            .connect_lazy();
        Broker {
            client: OAuthBrokerServiceClient::new(channel),
            principal,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        locksmith_auth::forward(&mut request, &self.principal);
        request
    }

    async fn store(&mut self, name: &str, credentials: Credentials) -> Result<(), tonic::Status> {
        let r = self.request(pb::StoreCredentialsRequest {
            name: name.to_owned(),
            credentials: Some(credentials),
            inputs: Default::default(),
        });
        self.client.store_credentials(r).await.map(drop)
    }

    async fn refresh(&mut self, name: &str) -> Result<(), tonic::Status> {
        let r = self.request(pb::RefreshConnectionRequest {
            name: name.to_owned(),
        });
        self.client.refresh_connection(r).await.map(drop)
    }

    async fn start(&mut self, owner: &str) -> Result<(), tonic::Status> {
        let r = self.request(pb::StartAuthorizationRequest {
            owner: owner.to_owned(),
            integration: "oidc".into(),
            ..Default::default()
        });
        self.client.start_authorization(r).await.map(drop)
    }

    async fn health(
        &mut self,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListTenantHealthResponse, tonic::Status> {
        let r = self.request(pb::ListTenantHealthRequest {
            page_size,
            page_token: page_token.to_owned(),
        });
        self.client
            .list_tenant_health(r)
            .await
            .map(|r| r.into_inner())
    }
}

fn api_key() -> Credentials {
    Credentials::ApiKey(pb::ApiKeyCredentials {
        key: "sk-health-test".into(),
    })
}

/// Imported tokens expiring in `expires_in` seconds, with a refresh token
/// the OAuth server never issued (any refresh of it is `invalid_grant`).
fn tokens(expires_in: u32, refresh: bool) -> Credentials {
    Credentials::Tokens(pb::ImportedTokens {
        access_token: "imported-access-token".into(),
        refresh_token: if refresh {
            "imported-refresh-token".into()
        } else {
            String::new()
        },
        expires_in,
        scopes: vec!["read".into()],
    })
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Asserts a gRPC error's code, ErrorInfo reason and detail.
fn assert_status(status: &tonic::Status, code: Code, want_reason: &str, detail: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(status), want_reason, "{status:?}");
    assert_eq!(ApiError::from_status(status).detail, detail, "{status:?}");
}

const DAY: u32 = 24 * 3600;

/// `tenants/{t}` + `rest`.
fn at(t: &str, rest: &str) -> String {
    format!("tenants/{t}{rest}")
}

/// Makes `name` needs_reauth: a refresh the server refuses (`invalid_grant`).
async fn needs_reauth(broker: &mut Broker, name: &str) {
    broker.store(name, tokens(3600, true)).await.unwrap();
    let err = broker.refresh(name).await.unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        "FAILED_PRECONDITION",
        &format!(
            "connection {name} needs re-authorization: the provider refused its grant; \
             authorize it again"
        ),
    );
}

/// Makes `name` refresh_failing: the server answers the refresh 503.
async fn refresh_failing(broker: &mut Broker, client: &RegisteredClient, name: &str) {
    broker.store(name, tokens(3600, true)).await.unwrap();
    oauth_server()
        .set_behaviour(
            &client.client_id,
            &Behaviour {
                fail_next: Some(1),
                ..Behaviour::default()
            },
        )
        .await;
    let err = broker.refresh(name).await.unwrap_err();
    assert_status(
        &err,
        Code::Unavailable,
        "UNAVAILABLE",
        "the provider is unavailable; retry later",
    );
}

fn counts(tenant: &str, active: u32, expiring: u32, reauth: u32, failing: u32) -> Value {
    json!({
        "tenant_id": tenant,
        "active": active,
        "expiring_soon": expiring,
        "needs_reauth": reauth,
        "refresh_failing": failing,
        "total": active + expiring + reauth + failing,
    })
}

#[tokio::test]
async fn tenants_connections_are_counted_by_health_at_every_owner_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, client) = health_suite(&dir, true).await;
    let client = client.unwrap();
    populate_tenants(&suite, &["alpha", "beta"]).await;
    create_tenant(&suite, "gamma").await;
    let mut broker = Broker::new(&suite, operator());
    let bot = "/orgs/sales/bots/m1";
    let user = "/orgs/sales/users/m1";

    // Alpha: 4 active, 2 expiring soon, 1 needs_reauth, 1 refresh_failing.
    // The tenant: an API key; tokens with a refresh token (active); tokens
    // without one expiring within the day (expiring soon).
    let (status, body) = suite
        .post(
            "/tenants/alpha/integrations/keys/credentials",
            json!({"credentials": {"api_key": {"key": "sk-alpha"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    broker
        .store(&at("alpha", "/integrations/oidc"), tokens(3600, true))
        .await
        .unwrap();
    broker
        .store(&at("alpha", "/integrations/oidc2"), tokens(3600, false))
        .await
        .unwrap();
    // The org: refused by the provider.
    needs_reauth(&mut broker, &at("alpha", "/orgs/sales/integrations/oidc")).await;
    // The bot: a transient failure; and tokens expiring in a minute.
    refresh_failing(
        &mut broker,
        &client,
        &at("alpha", &format!("{bot}/integrations/oidc")),
    )
    .await;
    broker
        .store(
            &at("alpha", &format!("{bot}/integrations/oidc2")),
            tokens(60, false),
        )
        .await
        .unwrap();
    // The user: an API key, and tokens without a refresh token that last
    // longer than the window (active).
    broker
        .store(
            &at("alpha", &format!("{user}/integrations/keys")),
            api_key(),
        )
        .await
        .unwrap();
    broker
        .store(
            &at("alpha", &format!("{user}/integrations/oidc")),
            tokens(2 * DAY, false),
        )
        .await
        .unwrap();

    // Beta: 1 active, 0 expiring soon, 2 needs_reauth, 1 refresh_failing.
    needs_reauth(&mut broker, &at("beta", "/integrations/oidc")).await;
    needs_reauth(
        &mut broker,
        &at("beta", &format!("{user}/integrations/oidc")),
    )
    .await;
    broker
        .store(&at("beta", "/orgs/sales/integrations/keys"), api_key())
        .await
        .unwrap();
    refresh_failing(
        &mut broker,
        &client,
        &at("beta", &format!("{bot}/integrations/oidc2")),
    )
    .await;

    let alpha = counts("alpha", 4, 2, 1, 1);
    let beta = counts("beta", 1, 0, 2, 1);
    let gamma = counts("gamma", 0, 0, 0, 0);

    // Everything on one page.
    let (status, body) = suite.get("/admin/health/tenants").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"tenants": [alpha.clone(), beta.clone(), gamma.clone()]})
    );

    // Two tenants a page, following next_page_token.
    let (status, first) = suite.get("/admin/health/tenants?page_size=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["tenants"], json!([alpha, beta]));
    let token = first["next_page_token"].as_str().unwrap();
    let (status, second) = suite
        .get(&format!(
            "/admin/health/tenants?page_size=2&page_token={token}"
        ))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second, json!({"tenants": [gamma]}));

    // Over gRPC, one tenant a page: the same counts.
    let page = broker.health(1, "").await.unwrap();
    assert_eq!(
        page.tenants,
        vec![pb::TenantHealth {
            tenant: "tenants/alpha".into(),
            active: 4,
            expiring_soon: 2,
            needs_reauth: 1,
            refresh_failing: 1,
        }]
    );
    let page = broker.health(1, &page.next_page_token).await.unwrap();
    assert_eq!(page.tenants[0].tenant, "tenants/beta");
    assert_eq!(
        (
            page.tenants[0].needs_reauth,
            page.tenants[0].refresh_failing
        ),
        (2, 1)
    );
    let page = broker.health(1, &page.next_page_token).await.unwrap();
    assert_eq!(page.tenants[0].tenant, "tenants/gamma");
    assert_eq!(page.next_page_token, "");

    // A bad page token or size is named.
    let (status, body) = suite
        .get("/admin/health/tenants?page_token=not-a-token")
        .await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "page_token", "{body}");
    let (status, body) = suite.get("/admin/health/tenants?page_size=0").await;
    assert_problem(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["errors"][0]["field"], "page_size", "{body}");
    let err = broker.health(-1, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.get_error_details()
            .bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "page_size"
    );

    // Tenant principals are refused, even their own tenant's admin: over
    // HTTP as every operator route answers, and by the broker itself.
    let alpha_admin = suite.client_as(&suite.tenant_key("alpha", &["admin"]).await);
    let (status, body) = suite
        .call_with(&alpha_admin, Method::GET, "/admin/health/tenants", None)
        .await;
    let detail = assert_problem(status, &body, 403, "PERMISSION_DENIED");
    assert_eq!(detail, "this call needs an operator admin key");
    let err = Broker::new(&suite, admin_of("alpha"))
        .health(0, "")
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
        "this call needs an operator admin key",
    );
}

/// Whether the broker holds a connection record at `name` (read as the
/// broker itself, straight from the credential store).
async fn stored(suite: &Suite, name: &str) -> bool {
    let mut store = suite.credstore_client_as(ServiceName::Broker);
    match store
        .get_connection(cs::GetConnectionRequest { name: name.into() })
        .await
    {
        Ok(_) => true,
        Err(e) if e.code() == Code::NotFound => false,
        Err(e) => panic!("{name}: {e:?}"),
    }
}

#[tokio::test]
async fn an_owner_that_does_not_exist_gets_nothing_started_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, _) = health_suite(&dir, false).await;
    populate_tenants(&suite, &["alpha", "beta"]).await;
    let ghost_bot = "bot 'ghost' of org 'sales' in tenant 'alpha' does not exist";

    // Over HTTP: authorize for a bot nobody created, and store for it.
    let (status, body) = suite
        .post(
            "/oauth/authorize/oidc",
            json!({"tenant_id": "alpha", "org_id": "sales", "bot_id": "ghost"}),
        )
        .await;
    assert_eq!(assert_problem(status, &body, 404, "NOT_FOUND"), ghost_bot);
    let (status, body) = suite
        .post(
            "/tenants/alpha/orgs/sales/bots/ghost/integrations/keys/credentials",
            json!({"credentials": {"api_key": {"key": "sk-ghost"}}}),
        )
        .await;
    assert_eq!(assert_problem(status, &body, 404, "NOT_FOUND"), ghost_bot);
    // A tenant's own admin key gets the same.
    let alpha_admin = suite.client_as(&suite.tenant_key("alpha", &["admin"]).await);
    let (status, body) = suite
        .call_with(
            &alpha_admin,
            Method::POST,
            "/oauth/authorize/oidc",
            Some(json!({"tenant_id": "alpha", "org_id": "sales", "bot_id": "ghost"})),
        )
        .await;
    assert_eq!(assert_problem(status, &body, 404, "NOT_FOUND"), ghost_bot);

    // Over gRPC, as the operator and as alpha's admin.
    for principal in [operator(), admin_of("alpha")] {
        let mut broker = Broker::new(&suite, principal);
        let err = broker
            .start("tenants/alpha/orgs/sales/bots/ghost")
            .await
            .unwrap_err();
        assert_status(&err, Code::NotFound, "NOT_FOUND", ghost_bot);
        let err = broker
            .store(
                "tenants/alpha/orgs/sales/bots/ghost/integrations/keys",
                api_key(),
            )
            .await
            .unwrap_err();
        assert_status(&err, Code::NotFound, "NOT_FOUND", ghost_bot);
    }
    // The missing level is the one named: an org, a user, a tenant.
    let mut broker = Broker::new(&suite, operator());
    let err = broker
        .start("tenants/alpha/orgs/nowhere/bots/m1")
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::NotFound,
        "NOT_FOUND",
        "org 'nowhere' in tenant 'alpha' does not exist",
    );
    let err = broker
        .store(
            "tenants/alpha/orgs/sales/users/nobody/integrations/keys",
            api_key(),
        )
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::NotFound,
        "NOT_FOUND",
        "user 'nobody' of org 'sales' in tenant 'alpha' does not exist",
    );
    let err = broker.start("tenants/ghost").await.unwrap_err();
    assert_status(
        &err,
        Code::NotFound,
        "NOT_FOUND",
        "tenant 'ghost' does not exist",
    );
    // Another tenant's missing bot is as absent to alpha's admin as any of
    // beta's owners: refused before the registry is asked.
    let err = Broker::new(&suite, admin_of("alpha"))
        .start("tenants/beta/orgs/sales/bots/ghost")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "NOT_FOUND", "owner not found");

    // A suspended tenant takes no new connection at its own scope.
    let (status, body) = suite
        .patch(
            "/tenants/beta",
            json!({"version": 1, "status": "suspended"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = suite
        .post(
            "/tenants/beta/integrations/keys/credentials",
            json!({"credentials": {"api_key": {"key": "sk-beta"}}}),
        )
        .await;
    let detail = assert_problem(status, &body, 422, "FAILED_PRECONDITION");
    assert_eq!(
        detail,
        "tenant 'beta' is suspended: it takes no new connections"
    );

    // Nothing was stored for any of them.
    for name in [
        "tenants/alpha/orgs/sales/bots/ghost/integrations/keys",
        "tenants/alpha/orgs/sales/users/nobody/integrations/keys",
        "tenants/beta/integrations/keys",
    ] {
        assert!(!stored(&suite, name).await, "{name} was stored");
    }
    let (status, body) = suite.get("/admin/health/tenants").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"tenants": [counts("alpha", 0, 0, 0, 0), counts("beta", 0, 0, 0, 0)]})
    );

    // The owners that exist do get theirs.
    broker
        .store(
            "tenants/alpha/orgs/sales/bots/m1/integrations/keys",
            api_key(),
        )
        .await
        .unwrap();
    broker
        .start("tenants/alpha/orgs/sales/bots/m1")
        .await
        .unwrap();
    let (status, body) = suite
        .post(
            "/oauth/authorize/oidc",
            json!({"tenant_id": "alpha", "org_id": "sales", "user_id": "m1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(stored(&suite, "tenants/alpha/orgs/sales/bots/m1/integrations/keys").await);
}
