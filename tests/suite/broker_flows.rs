//! The broker's flows over mTLS gRPC, in-process, against the suite's
//! credential store: a full authorization-code + PKCE flow against the real
//! OAuth server (`oauth_server.rs`, driven headlessly), tokens stored
//! sealed, the refusals of the callback (each with its exact code and field,
//! nothing stored), and custom-provider-like entries whose token endpoints
//! answer form-encoded or nest the token (a tiny local server of this file).
//!
//! The catalog admits https endpoints only, so the plain-HTTP servers are
//! reached through a TLS front whose CA the egress guard trusts (`ca_files`);
//! loopback is allow-listed, as the issue says the tests need.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use locksmith_auth::{Principal, Role, Roles};
use locksmith_broker::{
    catalog::Catalog,
    config::{PublicUrl, ReturnUrlPolicy},
    credstore::CredstoreClient,
    flows::{Broker, SuiteEndpoints},
    refresh::{RefreshConfig, Refresher},
    server,
    state::PendingStore,
};
use locksmith_domain::TenantId;
use locksmith_egress::{EgressClient, EgressPolicy};
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_proto::broker::v1::{
    self as pb, o_auth_broker_service_client::OAuthBrokerServiceClient,
};
use locksmith_proto::credstore::v1 as cpb;
use locksmith_store::{Clock, DocumentStore, EmbeddedStore, Key};
use locksmith_tls::{CertificateAuthority, Identity, ServiceName};
use secrecy::ExposeSecret;
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::transport::{Channel, Endpoint};

use crate::harness::{Suite, create_tenant, load_tls};
use crate::oauth_server::{ClientSpec, Decision, oauth_server};

pub(crate) const PUBLIC_URL: &str = "http://127.0.0.1:9";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback/oidc";

/// An https front: TLS on a loopback port, bytes copied to `upstream`;
/// answers its port and the CA file that makes its certificate trusted.
pub(crate) async fn tls_front(upstream: SocketAddr, dir: &TempDir) -> (u16, PathBuf) {
    tls_front_speaking(upstream, dir, Vec::new()).await
}

/// [`tls_front`] offering `alpn` protocols (`h2`: clients then speak HTTP/2
/// through it, to an upstream that understands it in the clear).
pub(crate) async fn tls_front_speaking(
    upstream: SocketAddr,
    dir: &TempDir,
    alpn: Vec<Vec<u8>>,
) -> (u16, PathBuf) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let now = OffsetDateTime::now_utc();
    // A name of its own: a client trusting several fronts' CAs picks the
    // trust anchor by subject, and same-named CAs would be confused.
    let name = format!("tls-front-{}", uuid::Uuid::new_v4());
    let ca = CertificateAuthority::generate(&name, now).unwrap();
    // A service certificate carries 127.0.0.1 and localhost SANs.
    let leaf = ca
        .issue(
            &Identity::Service(ServiceName::Broker),
            now,
            time::Duration::days(1),
        )
        .unwrap();
    let ca_file = dir.path().join(format!("{name}.pem"));
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.expose_secret().as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca_file)
}

fn upstream_of(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap()
}

/// A token endpoint with a quirk: answers every request with `body` and
/// `content_type`, counting requests and keeping the last request's body.
pub(crate) struct QuirkServer {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicU64>,
    pub(crate) last_body: Arc<std::sync::Mutex<String>>,
}

pub(crate) async fn quirk_server(content_type: &'static str, body: String) -> QuirkServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let last_body = Arc::new(std::sync::Mutex::new(String::new()));
    let (h, l) = (hits.clone(), last_body.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (h, l, body) = (h.clone(), l.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                h.fetch_add(1, Ordering::SeqCst);
                *l.lock().unwrap() = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    QuirkServer {
        addr,
        hits,
        last_body,
    }
}

/// The broker under test, served over mTLS, with a clock the test moves.
pub(crate) struct World {
    suite: Suite,
    /// The broker as the edge calls it.
    pub(crate) edge: OAuthBrokerServiceClient<Channel>,
    /// The broker as the token proxy calls it.
    pub(crate) proxy: OAuthBrokerServiceClient<Channel>,
    /// Seconds added to the wall clock.
    skew: Arc<AtomicI64>,
    _dir: TempDir,
}

pub(crate) fn acme_writer() -> Principal {
    tenant_principal("acme", Role::Write)
}

pub(crate) fn tenant_principal(tenant: &str, role: Role) -> Principal {
    Principal::Tenant {
        tenant: TenantId::parse(tenant).unwrap(),
        roles: Roles::of([role]),
        subject: format!("api-key:{tenant}-test"),
    }
}

pub(crate) fn as_principal<T>(message: T, principal: Option<&Principal>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(p) = principal {
        locksmith_auth::forward(&mut request, p);
    }
    request
}

fn broker_client(
    suite: &Suite,
    addr: SocketAddr,
    as_: ServiceName,
) -> OAuthBrokerServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(load_tls(suite.pki.path(), as_).client_tls("localhost"))
        .unwrap()
        .connect_lazy();
    OAuthBrokerServiceClient::new(channel)
}

/// Starts the suite (tenants `acme` and `beta`), the system OAuth app of
/// each integration in `apps` (id → (client id, secret)), and a broker
/// serving `catalog` with `ca_files` trusted.
async fn world(
    catalog: &str,
    ca_files: Vec<PathBuf>,
    apps: &[(&str, &str, &str)],
    dir: TempDir,
) -> World {
    world_with(catalog, ca_files, apps, dir, SuiteEndpoints::new()).await
}

/// [`world`], with custom providers refused when aimed at `suite`.
pub(crate) async fn world_with(
    catalog: &str,
    ca_files: Vec<PathBuf>,
    apps: &[(&str, &str, &str)],
    dir: TempDir,
    suite_endpoints: SuiteEndpoints,
) -> World {
    let suite = Suite::start().await;
    create_tenant(&suite, "acme").await;
    create_tenant(&suite, "beta").await;
    let mut cli = suite.credstore_client_as(ServiceName::Edge);
    let operator = Principal::Operator {
        subject: "api-key:root".into(),
    };
    for (integration, id, secret) in apps {
        let fields: HashMap<String, String> = [
            ("client-id".to_owned(), (*id).to_owned()),
            ("client-secret".to_owned(), (*secret).to_owned()),
        ]
        .into();
        cli.put_secret(as_principal(
            cpb::PutSecretRequest {
                name: format!("system/secrets/oauth-apps/{integration}"),
                fields,
                expected_version: 0,
                unconditional: false,
            },
            Some(&operator),
        ))
        .await
        .unwrap();
    }
    let catalog = Arc::new(Catalog::parse(catalog).unwrap());
    let tls = load_tls(suite.pki.path(), ServiceName::Broker);
    let egress = EgressClient::new(EgressPolicy {
        allow_cidrs: vec!["127.0.0.0/8".into()],
        ca_files,
        ..EgressPolicy::default()
    })
    .unwrap();
    let credstore = CredstoreClient::connect_lazy(&suite.credstore.url, "localhost", &tls).unwrap();
    let refresher = Refresher::new(
        credstore.clone(),
        egress.clone(),
        catalog.clone(),
        RefreshConfig::default(),
    )
    .unwrap();
    let return_urls = ReturnUrlPolicy::compile(
        &[(
            "acme".to_owned(),
            vec!["https://app.acme.example/done".to_owned()],
        )]
        .into(),
    )
    .unwrap();
    let broker = Arc::new(
        Broker::new(
            catalog,
            PendingStore::new(EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap()),
            credstore,
            egress,
            refresher,
            PublicUrl::parse(PUBLIC_URL).unwrap(),
            return_urls,
        )
        .protect(suite_endpoints),
    );
    let skew = Arc::new(AtomicI64::new(0));
    let moved = skew.clone();
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::now_utc() + time::Duration::seconds(moved.load(Ordering::SeqCst))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        server::serve(listener, &tls, broker, clock, std::future::pending())
            .await
            .unwrap();
    });
    let edge = broker_client(&suite, addr, ServiceName::Edge);
    let proxy = broker_client(&suite, addr, ServiceName::Proxy);
    World {
        suite,
        edge,
        proxy,
        skew,
        _dir: dir,
    }
}

/// The test catalog's `oidc` entry, at the front on `port`.
fn oidc_catalog(port: u16) -> String {
    format!(
        r#"
version = 1
[providers.oidc]
display_name = "Test OAuth server"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://localhost:{port}/auth"
token_url = "https://localhost:{port}/token"
revocation_url = "https://localhost:{port}/token/revocation"
client_auth = "basic"
pkce = true
default_scopes = ["read", "write"]
"#
    )
}

async fn oidc_world() -> (World, crate::oauth_server::RegisteredClient, u16) {
    let server = oauth_server();
    let dir = tempfile::tempdir().unwrap();
    let (port, ca) = tls_front(upstream_of(&server.issuer), &dir).await;
    let client = server
        .register_client(&ClientSpec::code_flow(REDIRECT_URI))
        .await;
    let world = world(
        &oidc_catalog(port),
        vec![ca],
        &[("oidc", &client.client_id, &client.client_secret)],
        dir,
    )
    .await;
    (world, client, port)
}

impl World {
    pub(crate) async fn start(
        &mut self,
        principal: &Principal,
        owner: &str,
        integration: &str,
        return_url: &str,
    ) -> Result<pb::StartAuthorizationResponse, tonic::Status> {
        self.edge
            .start_authorization(as_principal(
                pb::StartAuthorizationRequest {
                    owner: owner.into(),
                    integration: integration.into(),
                    return_url: return_url.into(),
                    ..Default::default()
                },
                Some(principal),
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The callback as the edge forwards an anonymous one.
    pub(crate) async fn complete(
        &mut self,
        request: pb::CompleteAuthorizationRequest,
    ) -> Result<pb::CompleteAuthorizationResponse, tonic::Status> {
        self.edge
            .complete_authorization(as_principal(request, None))
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn list(&mut self, owner: &str) -> Vec<pb::Connection> {
        let operator = Principal::Operator {
            subject: "api-key:root".into(),
        };
        self.edge
            .list_connections(as_principal(
                pb::ListConnectionsRequest {
                    parent: owner.into(),
                    ..Default::default()
                },
                Some(&operator),
            ))
            .await
            .unwrap()
            .into_inner()
            .connections
    }

    /// The credential store's raw bytes of a connection record, as an
    /// attacker with the database would read them.
    pub(crate) async fn raw_record(&self, name: &str) -> Vec<u8> {
        let key = Key::parse(name).unwrap();
        self.suite
            .credstore_core
            .store()
            .read(&key, None)
            .await
            .unwrap()
            .body
    }
}

/// The browser's part: the provider's login and consent pages, driven
/// headlessly on the server's own (plain-HTTP) address.
async fn authorize_in_browser(
    authorization_url: &str,
    front_port: u16,
    decision: Decision,
) -> crate::oauth_server::Callback {
    let server = oauth_server();
    let url = authorization_url.replace(&format!("https://localhost:{front_port}"), &server.issuer);
    server.authorize_as(&url, &decision).await.unwrap()
}

fn callback(
    params: &std::collections::BTreeMap<String, String>,
) -> pb::CompleteAuthorizationRequest {
    pb::CompleteAuthorizationRequest {
        integration: "oidc".into(),
        state: params.get("state").cloned().unwrap_or_default(),
        code: params.get("code").cloned().unwrap_or_default(),
        error: params.get("error").cloned().unwrap_or_default(),
        error_description: params.get("error_description").cloned().unwrap_or_default(),
        redirect_uri: REDIRECT_URI.into(),
    }
}

/// Asserts `status` is `code` with the Locksmith reason and, for
/// INVALID_ARGUMENT, the one field `field` with `description`.
pub(crate) fn assert_refused(status: &tonic::Status, code: ErrorCode, field: Option<(&str, &str)>) {
    let api = ApiError::from_status(status);
    assert_eq!(api.code, code, "{status:?}");
    assert_eq!(status.code(), code.grpc(), "{status:?}");
    if let Some((field, description)) = field {
        assert_eq!(api.violations.len(), 1, "{status:?}");
        assert_eq!(api.violations[0].field, field, "{status:?}");
        assert_eq!(api.violations[0].description, description, "{status:?}");
    }
}

#[tokio::test]
async fn a_full_code_flow_with_pkce_stores_sealed_tokens_that_work() {
    let (mut w, client, port) = oidc_world().await;
    let started = w
        .start(
            &acme_writer(),
            "tenants/acme",
            "oidc",
            "https://app.acme.example/done/x",
        )
        .await
        .unwrap();
    let url = reqwest::Url::parse(&started.authorization_url).unwrap();
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["state"], started.state);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], REDIRECT_URI);
    assert_eq!(query["scope"], "read write");
    assert_eq!(started.state.len(), 43);

    let cb = authorize_in_browser(
        &started.authorization_url,
        port,
        Decision::Approve {
            login: "alice".into(),
        },
    )
    .await;
    let done = w.complete(callback(&cb.params)).await.unwrap();
    assert_eq!(done.return_url, "https://app.acme.example/done/x");
    let conn = done.connection.unwrap();
    assert_eq!(conn.name, "tenants/acme/integrations/oidc");
    assert_eq!(conn.status(), pb::ConnectionStatus::Active);
    assert_eq!(conn.auth_mode(), pb::AuthMode::Oauth2Code);
    assert!(conn.has_refresh_token);
    assert!(conn.expire_time.is_some());
    let server = oauth_server();
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("authorization_code"), Some(&1));
    assert_eq!(counted.success, 1);

    // The proxy gets a token the provider accepts; it is sealed at rest.
    let token = w
        .proxy
        .get_access_token(as_principal(
            pb::GetAccessTokenRequest {
                name: conn.name.clone(),
                refused_version: 0,
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.resource(&token.credential).await.0, 200);
    let raw = w.raw_record(&conn.name).await;
    let needle = token.credential.as_bytes();
    assert!(!raw.windows(needle.len()).any(|w| w == needle));

    // Replaying the callback is refused and changes nothing.
    let replay = w.complete(callback(&cb.params)).await.unwrap_err();
    assert_refused(
        &replay,
        ErrorCode::InvalidArgument,
        Some(("state", "was already used; start the authorization again")),
    );

    // The edge may not read token values; another tenant sees nothing.
    let denied = w
        .edge
        .get_access_token(as_principal(
            pb::GetAccessTokenRequest {
                name: conn.name.clone(),
                refused_version: 0,
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let hidden = w
        .edge
        .get_connection(as_principal(
            pb::GetConnectionRequest {
                name: conn.name.clone(),
            },
            Some(&tenant_principal("beta", Role::Admin)),
        ))
        .await
        .unwrap_err();
    assert_refused(&hidden, ErrorCode::NotFound, None);
    assert_eq!(
        ApiError::from_status(&hidden).detail,
        "connection not found"
    );

    // Delete revokes the grant at the provider, then erases the record.
    let deleted = w
        .edge
        .delete_connection(as_principal(
            pb::DeleteConnectionRequest {
                name: conn.name.clone(),
            },
            Some(&acme_writer()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.revoked_at_provider);
    assert_eq!(server.resource(&token.credential).await.0, 401);
    assert!(w.list("tenants/acme").await.is_empty());
}

#[tokio::test]
async fn bad_callbacks_are_refused_with_exact_reasons_and_store_nothing() {
    let (mut w, _client, port) = oidc_world().await;
    let approve = || Decision::Approve {
        login: "alice".into(),
    };

    // Unknown and tampered states.
    let mut unknown = callback(&Default::default());
    unknown.state = "A".repeat(43);
    unknown.code = "x".into();
    let e = w.complete(unknown.clone()).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("state", "is unknown")),
    );
    unknown.state = "not even a state".into();
    let e = w.complete(unknown).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("state", "is unknown")),
    );

    let started = w
        .start(&acme_writer(), "tenants/acme", "oidc", "")
        .await
        .unwrap();
    let cb = authorize_in_browser(&started.authorization_url, port, approve()).await;
    let mut tampered = callback(&cb.params);
    let last = if tampered.state.ends_with('A') {
        "B"
    } else {
        "A"
    };
    tampered.state.replace_range(42..43, last);
    let e = w.complete(tampered).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("state", "is unknown")),
    );

    // A state presented by another tenant's principal: unknown to it, and
    // not burnt (the genuine callback still completes afterwards).
    let foreign = w
        .edge
        .complete_authorization(as_principal(
            callback(&cb.params),
            Some(&tenant_principal("beta", Role::Admin)),
        ))
        .await
        .unwrap_err();
    assert_refused(
        &foreign,
        ErrorCode::InvalidArgument,
        Some(("state", "is unknown")),
    );
    assert!(w.list("tenants/beta").await.is_empty());

    // A mismatched redirect URI burns the state and stores nothing.
    let mut moved = callback(&cb.params);
    moved.redirect_uri = "https://evil.example/oauth/callback/oidc".into();
    let e = w.complete(moved).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some((
            "redirect_uri",
            "is not the redirect URI the state was issued for",
        )),
    );
    let e = w.complete(callback(&cb.params)).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("state", "was already used; start the authorization again")),
    );

    // An expired state (the broker's clock moved past ten minutes).
    let started = w
        .start(&acme_writer(), "tenants/acme", "oidc", "")
        .await
        .unwrap();
    let cb = authorize_in_browser(&started.authorization_url, port, approve()).await;
    w.skew.store(601, Ordering::SeqCst);
    let e = w.complete(callback(&cb.params)).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("state", "has expired; start the authorization again")),
    );
    w.skew.store(0, Ordering::SeqCst);

    // The user pressing Cancel: the provider's error, clearly, nothing stored.
    let started = w
        .start(&acme_writer(), "tenants/acme", "oidc", "")
        .await
        .unwrap();
    let cb = authorize_in_browser(&started.authorization_url, port, Decision::Deny).await;
    assert_eq!(cb.params["error"], "access_denied");
    let e = w.complete(callback(&cb.params)).await.unwrap_err();
    assert_refused(&e, ErrorCode::FailedPrecondition, None);
    assert_eq!(
        ApiError::from_status(&e).detail,
        "oidc refused the request: `access_denied` (HTTP 302)"
    );
    // With a return URL the refusal is an answer, so the edge can send the
    // browser back there: a fixed code, no connection, nothing stored.
    let started = w
        .start(
            &acme_writer(),
            "tenants/acme",
            "oidc",
            "https://app.acme.example/done/x",
        )
        .await
        .unwrap();
    let cb = authorize_in_browser(&started.authorization_url, port, Decision::Deny).await;
    let done = w.complete(callback(&cb.params)).await.unwrap();
    assert_eq!(done.connection, None);
    assert_eq!(done.return_url, "https://app.acme.example/done/x");
    assert_eq!(
        done.error.map(|e| e.code()),
        Some(pb::FlowErrorCode::AccessDenied)
    );
    let e = w.complete(callback(&cb.params)).await.unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some(("state", "was already used; start the authorization again")),
    );

    // A return URL off the tenant's allow-list is refused at the start.
    for off in [
        "https://evil.example/done",
        "https://app.acme.example/doneX",
        "https://app.acme.example.evil.com/done",
    ] {
        let e = w
            .start(&acme_writer(), "tenants/acme", "oidc", off)
            .await
            .unwrap_err();
        assert_refused(
            &e,
            ErrorCode::InvalidArgument,
            Some((
                "return_url",
                "is not on the tenant's allow-list of return URLs",
            )),
        );
    }
    // beta has no allow-list at all.
    let e = w
        .start(
            &tenant_principal("beta", Role::Write),
            "tenants/beta",
            "oidc",
            "https://app.acme.example/done",
        )
        .await
        .unwrap_err();
    assert_refused(
        &e,
        ErrorCode::InvalidArgument,
        Some((
            "return_url",
            "is not on the tenant's allow-list of return URLs",
        )),
    );

    // Starting needs the write role of that tenant.
    let e = w
        .start(
            &tenant_principal("acme", Role::Read),
            "tenants/acme",
            "oidc",
            "",
        )
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::PermissionDenied, None);
    let e = w
        .start(&acme_writer(), "tenants/beta", "oidc", "")
        .await
        .unwrap_err();
    assert_refused(&e, ErrorCode::NotFound, None);

    assert!(w.list("tenants/acme").await.is_empty());
    assert!(w.list("tenants/beta").await.is_empty());
}

/// A catalog of two custom-provider-like entries on the quirk servers'
/// fronts: `formy` answers form-encoded, `nesty` nests the token.
fn quirk_catalog(form_port: u16, nested_port: u16) -> String {
    format!(
        r#"
version = 1
[providers.formy]
display_name = "Form-encoded"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://localhost:{form_port}/authorize"
token_url = "https://localhost:{form_port}/token"
client_auth = "body"
pkce = true
[providers.formy.token_response]
format = "form"

[providers.nesty]
display_name = "Nested"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://localhost:{nested_port}/authorize"
token_url = "https://localhost:{nested_port}/token"
client_auth = "basic"
pkce = false
[providers.nesty.token_response]
access_token = "data.grant.token"
refresh_token = "data.grant.renew"
expires_in = "data.grant.ttl"
metadata = {{ workspace_id = "data.workspace.id" }}
"#
    )
}

#[tokio::test]
async fn custom_providers_that_answer_form_encoded_or_nested_complete_the_flow() {
    let form = quirk_server(
        "application/x-www-form-urlencoded",
        "access_token=form-access&token_type=bearer&refresh_token=form-refresh&expires_in=3600&scope=a+b"
            .into(),
    )
    .await;
    let nested = quirk_server(
        "application/json",
        r#"{"ok":true,"data":{"grant":{"token":"nested-access","renew":"nested-refresh","ttl":600},"workspace":{"id":"w-42"}}}"#
            .into(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (form_port, form_ca) = tls_front(form.addr, &dir).await;
    let (nested_port, nested_ca) = tls_front(nested.addr, &dir).await;
    let mut w = world(
        &quirk_catalog(form_port, nested_port),
        vec![form_ca, nested_ca],
        &[
            ("formy", "form-id", "form-secret"),
            ("nesty", "nest-id", "nest-secret"),
        ],
        dir,
    )
    .await;

    for (integration, server, access, expires) in [
        ("formy", &form, "form-access", 3600),
        ("nesty", &nested, "nested-access", 600),
    ] {
        let started = w
            .start(&acme_writer(), "tenants/acme/orgs/sales", integration, "")
            .await;
        // The org does not need to exist in the registry for the flow; the
        // credential store keys the tenant.
        let started = started.unwrap();
        let done = w
            .complete(pb::CompleteAuthorizationRequest {
                integration: integration.into(),
                state: started.state.clone(),
                code: "the-code".into(),
                redirect_uri: format!("{PUBLIC_URL}/oauth/callback/{integration}"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "{integration}");
        let sent = server.last_body.lock().unwrap().clone();
        assert!(sent.contains("code=the-code"), "{sent}");
        assert!(sent.contains("grant_type=authorization_code"), "{sent}");
        // PKCE where the entry says so, and the verifier matches nothing
        // stored in clear.
        assert_eq!(
            sent.contains("code_verifier="),
            integration == "formy",
            "{sent}"
        );
        let conn = done.connection.unwrap();
        assert_eq!(
            conn.name,
            format!("tenants/acme/orgs/sales/integrations/{integration}")
        );
        let ttl = conn.expire_time.unwrap().seconds - conn.update_time.unwrap().seconds;
        assert_eq!(ttl, expires, "{integration}");
        assert!(conn.has_refresh_token);
        if integration == "nesty" {
            assert_eq!(conn.metadata["workspace_id"], "w-42");
        } else {
            assert_eq!(conn.scopes, vec!["a".to_owned(), "b".to_owned()]);
        }
        let token = w
            .proxy
            .get_access_token(as_principal(
                pb::GetAccessTokenRequest {
                    name: conn.name.clone(),
                    refused_version: 0,
                },
                None,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(token.credential, access);
        let raw = w.raw_record(&conn.name).await;
        assert!(!raw.windows(access.len()).any(|w| w == access.as_bytes()));
    }
    assert_eq!(w.list("tenants/acme/orgs/sales").await.len(), 2);
}
