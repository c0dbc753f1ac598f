//! The world of one broker refresh test: a credential store on the suite's
//! OpenBao served over mTLS, an https front for a plain-HTTP token server,
//! a one-entry catalog, and brokers (refreshers) made on demand.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use locksmith_auth::{Principal, Role, Roles};
use locksmith_broker::{
    catalog::{AuthMode, Catalog, ConnectionInputs, Provider},
    credstore::{CredstoreClient, OAuthApp},
    record::ConnectionState,
    refresh::{RefreshConfig, Refresher},
    token,
};
use locksmith_credstore::{CredStore, MemoryAudit, SecretFields};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_domain::{
    ConnectionRef, IntegrationId, Scope, TenantId,
    secrets::{SecretName, SecretRef},
};
use locksmith_egress::{EgressClient, EgressPolicy};
use locksmith_store::{Cas, OpenBaoConfig, OpenBaoStore};
use locksmith_tls::ServiceName;
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::broker_flows::tls_front;
use crate::harness::load_tls;
use crate::oauth_server::{ClientSpec, RegisteredClient, oauth_server, pkce_pair};
use crate::openbao::openbao;

/// Nothing listens here: the driver stops at the redirect.
pub(super) const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback/oidc";
pub(super) const INTEGRATION: &str = "oidc";

pub(super) fn upstream_of(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap()
}

/// One test's world: a credential store (own prefix on the shared OpenBao,
/// keys for the system and `acme`) served over mTLS, the OAuth app of the
/// system scope, and a catalog whose `oidc` entry points at the front.
pub(super) struct World {
    dir: TempDir,
    credstore_addr: SocketAddr,
    ca_file: PathBuf,
    pub catalog: Catalog,
    pub app: OAuthApp,
    pub at: ConnectionRef,
}

pub(super) fn operator() -> Principal {
    Principal::Operator {
        subject: "api-key:broker-refresh-test".into(),
    }
}

/// The caller of demands: a read-only key of tenant acme.
pub(super) fn reader() -> Principal {
    Principal::Tenant {
        tenant: TenantId::parse("acme").unwrap(),
        roles: Roles::of([Role::Read]),
        subject: "api-key:reader".into(),
    }
}

/// A catalog with one entry named `oidc` whose endpoints are the front's.
pub(super) fn catalog(port: u16, mode: AuthMode) -> Catalog {
    let base = format!("https://127.0.0.1:{port}");
    let (mode, authorize) = match mode {
        AuthMode::OAuth2ClientCredentials => ("oauth2_client_credentials", String::new()),
        _ => (
            "oauth2_authorization_code",
            format!("authorization_url = \"{base}/auth\"\npkce = true\n"),
        ),
    };
    Catalog::parse(&format!(
        r#"version = 1
[providers.{INTEGRATION}]
display_name = "oidc-provider (tests)"
auth_mode = "{mode}"
{authorize}token_url = "{base}/token"
revocation_url = "{base}/token/revocation"
client_auth = "basic"
accept_json = true
default_scopes = ["read", "write"]
"#
    ))
    .unwrap()
}

impl World {
    /// `upstream`: the plain-HTTP token server behind the front; `client`:
    /// its client id and secret, stored as the system's OAuth app.
    pub(super) async fn start(upstream: SocketAddr, client: (&str, &str), mode: AuthMode) -> World {
        crate::harness::spans();
        locksmith_tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        locksmith_tls::init_dir(dir.path(), OffsetDateTime::now_utc(), false).unwrap();
        let bao = openbao();
        let mut config = OpenBaoConfig::new(&bao.addr, SecretString::from(bao.root_token.clone()));
        config.prefix = Some(format!("broker-refresh/{}", uuid::Uuid::new_v4()));
        let clock = locksmith_store::system_clock();
        let core = Arc::new(CredStore::new(
            OpenBaoStore::new(&config).unwrap(),
            MasterKeyWrapper::load_or_create(dir.path().join("master-key")).unwrap(),
            Arc::new(MemoryAudit::new()),
            clock,
        ));
        core.ensure_system_key().await.unwrap();
        let acme = TenantId::parse("acme").unwrap();
        core.provision_tenant_key(&operator(), &acme).await.unwrap();
        let mut app = SecretFields::new();
        app.insert("client-id", SecretString::from(client.0.to_owned()));
        app.insert("client-secret", SecretString::from(client.1.to_owned()));
        let name = SecretName::parse(&format!("oauth-apps/{INTEGRATION}"), &Scope::System).unwrap();
        core.put(
            &operator(),
            &SecretRef {
                scope: Scope::System,
                name,
            },
            &app,
            Cas::CreateOnly,
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let credstore_addr = listener.local_addr().unwrap();
        let tls = load_tls(dir.path(), ServiceName::CredentialStore);
        tokio::spawn(async move {
            locksmith_credstore::server::serve(listener, &tls, core, std::future::pending())
                .await
                .unwrap();
        });
        let (port, ca_file) = tls_front(upstream, &dir).await;
        let at = ConnectionRef {
            scope: Scope::Org {
                tenant: acme,
                org: locksmith_domain::MemberId::parse("sales").unwrap(),
            },
            integration: IntegrationId::parse(INTEGRATION).unwrap(),
        };
        let mut world = World {
            dir,
            credstore_addr,
            ca_file,
            catalog: catalog(port, mode),
            app: OAuthApp {
                client_id: String::new(),
                client_secret: SecretString::from(String::new()),
                scope: String::new(),
            },
            at,
        };
        // Resolved as the broker does: from the connection's org upwards.
        world.app = world
            .credstore()
            .oauth_app(&world.at.scope, &world.at.integration)
            .await
            .unwrap();
        assert_eq!(
            (world.app.client_id.as_str(), world.app.scope.as_str()),
            (client.0, "system")
        );
        world
    }

    pub(super) fn provider(&self) -> &Provider {
        self.catalog.get(INTEGRATION).unwrap()
    }

    /// A client with the broker's certificate (its own channel).
    pub(super) fn credstore(&self) -> CredstoreClient {
        let tls = load_tls(self.dir.path(), ServiceName::Broker);
        CredstoreClient::connect_lazy(
            &format!("https://{}", self.credstore_addr),
            "localhost",
            &tls,
        )
        .unwrap()
    }

    pub(super) fn egress(&self, timeout_ms: u64) -> EgressClient {
        EgressClient::new(EgressPolicy {
            allow_cidrs: vec!["127.0.0.0/8".into()],
            ca_files: vec![self.ca_file.clone()],
            timeout_ms,
            ..EgressPolicy::default()
        })
        .unwrap()
    }

    /// A simulated broker process.
    pub(super) fn broker(&self, config: RefreshConfig) -> Refresher {
        Refresher::new(
            self.credstore(),
            self.egress(2_000),
            Arc::new(self.catalog.clone()),
            config,
        )
        .unwrap()
    }

    pub(super) async fn record(&self) -> (ConnectionState, u64) {
        self.credstore().get(None, &self.at).await.unwrap().unwrap()
    }
}

pub(super) fn quick() -> RefreshConfig {
    RefreshConfig {
        lease_ttl: Duration::from_secs(3),
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_secs(5),
        ..RefreshConfig::default()
    }
}

pub(super) fn secret(s: &Option<SecretString>) -> String {
    s.as_ref().unwrap().expose_secret().to_owned()
}

/// A code-flow client, one headless authorization with PKCE, the code
/// exchanged through `token.rs`, and the connection stored (version 1).
pub(super) async fn connected(
    client_spec: ClientSpec,
) -> (World, RegisteredClient, ConnectionState) {
    let server = oauth_server();
    let client = server.register_client(&client_spec).await;
    let world = World::start(
        upstream_of(&server.token_endpoint),
        (&client.client_id, &client.client_secret),
        AuthMode::OAuth2AuthorizationCode,
    )
    .await;
    let (verifier, challenge) = pkce_pair();
    let url = server.authorization_url(&client, "read write", "state-1", Some(&challenge));
    let callback = server.authorize(&url).await.unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let tokens = token::exchange_code(
        &world.egress(5_000),
        world.provider(),
        &ConnectionInputs::none(),
        &world.app,
        &SecretString::from(callback.code().to_owned()),
        REDIRECT_URI,
        Some(&SecretString::from(verifier)),
    )
    .await
    .unwrap();
    let mut state = ConnectionState::new(
        world.at.integration.clone(),
        AuthMode::OAuth2AuthorizationCode,
        now,
    );
    token::apply_tokens(&mut state, tokens, now);
    assert!(
        state.refresh_token.is_some(),
        "the server issues refresh tokens"
    );
    let version = world
        .credstore()
        .put(None, &world.at, &state, 0)
        .await
        .unwrap();
    assert_eq!(version, 1);
    (world, client, state)
}

pub(super) fn code_client() -> ClientSpec {
    ClientSpec::code_flow(REDIRECT_URI)
}

/// The instant just past the stored access token's expiry.
pub(super) fn expired(state: &ConnectionState) -> OffsetDateTime {
    state.expires_at.unwrap() + time::Duration::seconds(1)
}
