//! Starting the suite in-process, and small HTTP helpers.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, OnceLock},
};

use locksmith_broker::{
    catalog::Catalog,
    config::{PublicUrl, ReturnUrlPolicy, ReturnUrls},
    credstore::CredstoreClient,
    flows::Broker,
    refresh::{RefreshConfig, Refresher},
    registry::RegistryClient,
    state::PendingStore,
};
use locksmith_credstore::{CredStore, MemoryAudit};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_edge::{
    AppState, Backends, EdgeConfig,
    auth::AuthConfig,
    config::{Endpoint, Limits, Services},
};
use locksmith_egress::{EgressClient, EgressPolicy};
use locksmith_proto::credstore::v1::credential_store_service_client::CredentialStoreServiceClient;
use locksmith_proto::registry::v1::{
    self as pb, api_key_service_client::ApiKeyServiceClient,
    tenant_registry_service_client::TenantRegistryServiceClient,
};
use locksmith_proxy::{
    access::{AccessCache, BrokerSource, CacheConfig},
    audit::CallEvent,
    forward::{Forwarder, UpstreamConfig},
    grpc::ProxyApi,
    limits::{LimitsConfig, RegistrySource, TenantLimits},
};
use locksmith_registry::{
    CredStoreKeys, Registry, api_keys::secret::KeyHasher, config::Endpoint as RegistryEndpoint,
    server, system_clock,
};
use locksmith_store::EmbeddedStore;
use locksmith_tls::{ServiceName, TlsFiles, TlsMaterial};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::Value;
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint as TonicEndpoint};

/// Spans of every test in this process (tests filter by their own trace id).
pub fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let guard = locksmith_telemetry::init_with_provider(provider, "warn").expect("telemetry");
        // The process lives as long as the tests; keep the provider with it.
        std::mem::forget(guard);
        exporter
    })
}

/// The in-process credential store of a [`Suite`].
pub type SuiteCredStore = CredStore<EmbeddedStore, MasterKeyWrapper>;

/// A running credential store, registry and edge. Dropping it stops them.
pub struct Suite {
    pub edge: String,
    pub registry_addr: SocketAddr,
    /// Where the credential store listens (mTLS gRPC).
    pub credstore_addr: SocketAddr,
    /// The credential store as a service's `[services.credstore]` names it
    /// (the registry's today; the edge's once it routes secrets).
    pub credstore: Endpoint,
    /// The credential store's core, for reading its raw documents
    /// (`credstore.store()`) the way an attacker with the database would.
    pub credstore_core: Arc<SuiteCredStore>,
    /// The OAuth broker the edge calls (mTLS gRPC).
    pub broker: Endpoint,
    /// The token proxy the edge calls (mTLS gRPC).
    pub proxy: Endpoint,
    /// The proxy's audit trail.
    pub proxy_audit: Arc<locksmith_audit::MemoryAudit<CallEvent>>,
    pub pki: TempDir,
    /// Sends the operator admin key with every request.
    pub http: reqwest::Client,
    /// Sends no credentials.
    pub anonymous: reqwest::Client,
    stop: Vec<oneshot::Sender<()>>,
    credstore_running: Option<Running>,
}

/// A server task and the signal that stops it.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

fn stop_signal() -> (
    oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

pub fn load_tls(dir: &Path, service: ServiceName) -> TlsMaterial {
    TlsFiles::in_dir(dir, service).load().unwrap()
}

impl Suite {
    pub async fn start() -> Suite {
        Self::start_with(AuthConfig::default()).await
    }

    /// The suite with the edge's authentication configured as `auth`.
    pub async fn start_with(auth: AuthConfig) -> Suite {
        Self::start_full(auth, BrokerSetup::default(), ProxySetup::default()).await
    }

    /// The suite with a broker set up as `broker` says.
    pub async fn start_with_broker(broker: BrokerSetup) -> Suite {
        Self::start_full(AuthConfig::default(), broker, ProxySetup::default()).await
    }

    /// The suite with a broker and a token proxy set up as given.
    pub async fn start_with_proxy(broker: BrokerSetup, proxy: ProxySetup) -> Suite {
        Self::start_full(AuthConfig::default(), broker, proxy).await
    }

    async fn start_full(
        auth: AuthConfig,
        broker_setup: BrokerSetup,
        proxy_setup: ProxySetup,
    ) -> Suite {
        spans();
        locksmith_tls::install_crypto_provider();
        let pki = tempfile::tempdir().unwrap();
        locksmith_tls::init_dir(pki.path(), time::OffsetDateTime::now_utc(), false).unwrap();

        // The credential store first: the registry has it provision every
        // tenant's key.
        let credstore_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let credstore_addr = credstore_listener.local_addr().unwrap();
        let credstore_core = credstore_core(pki.path());
        // As the credential store's main does at start.
        credstore_core.ensure_system_key().await.unwrap();
        let credstore_running =
            serve_credstore(pki.path(), credstore_listener, Arc::clone(&credstore_core));
        let credstore = Endpoint {
            url: format!("https://{credstore_addr}"),
            server_name: "localhost".into(),
        };

        let registry_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let registry_addr = registry_listener.local_addr().unwrap();
        // The broker's address too: the registry erases deleted tenants'
        // custom providers there (it connects on first use).
        let broker_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let registry_tls = load_tls(pki.path(), ServiceName::Registry);
        let keys = CredStoreKeys::connect(
            &RegistryEndpoint {
                url: credstore.url.clone(),
                server_name: credstore.server_name.clone(),
            },
            &registry_tls,
        )
        .unwrap()
        .with_broker(
            &RegistryEndpoint {
                url: format!("https://{}", broker_listener.local_addr().unwrap()),
                server_name: "localhost".into(),
            },
            &registry_tls,
        )
        .unwrap();
        let registry = Arc::new(Registry::new(
            EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap(),
            Arc::new(keys),
            system_clock(),
        ));
        let (stop_registry, registry_stopped) = stop_signal();
        tokio::spawn(async move {
            let hasher = Arc::new(KeyHasher::random().unwrap());
            server::serve(
                registry_listener,
                &registry_tls,
                registry,
                hasher,
                registry_stopped,
            )
            .await
            .unwrap();
        });

        // The edge's address first: it is the broker's public URL, the base
        // of every redirect URI.
        let edge_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge_url = format!("http://{}", edge_listener.local_addr().unwrap());
        let (broker, stop_broker) = start_broker(
            broker_listener,
            pki.path(),
            &credstore,
            registry_addr,
            &edge_url,
            broker_setup,
        )
        .await;
        let proxy_audit = Arc::new(locksmith_audit::MemoryAudit::new());
        let (proxy, stop_proxy) = start_proxy(
            pki.path(),
            &broker,
            registry_addr,
            proxy_setup,
            Arc::clone(&proxy_audit),
        )
        .await;
        let (edge, stop_edge) = start_edge(
            pki.path(),
            edge_listener,
            registry_addr,
            &credstore,
            &broker,
            &proxy,
            auth,
        )
        .await;
        let admin_key = operator_key(pki.path(), registry_addr).await;
        Suite {
            edge,
            registry_addr,
            credstore_addr,
            credstore,
            credstore_core,
            broker,
            proxy,
            proxy_audit,
            pki,
            http: client_with_key(&admin_key),
            anonymous: reqwest::Client::new(),
            credstore_running: Some(credstore_running),
            // The registry first: `stop_registry` relies on it.
            stop: vec![stop_registry, stop_edge, stop_broker, stop_proxy],
        }
    }

    /// Another edge replica on the same registry, with its own caches.
    pub async fn extra_edge(&mut self, auth: AuthConfig) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (url, stop) = start_edge(
            self.pki.path(),
            listener,
            self.registry_addr,
            &self.credstore,
            &self.broker,
            &self.proxy,
            auth,
        )
        .await;
        self.stop.push(stop);
        url
    }

    /// Another token proxy replica on the same broker and registry, with its
    /// own credential cache.
    pub async fn extra_proxy(&mut self, setup: ProxySetup) -> Endpoint {
        let (endpoint, stop) = start_proxy(
            self.pki.path(),
            &self.broker,
            self.registry_addr,
            setup,
            Arc::clone(&self.proxy_audit),
        )
        .await;
        self.stop.push(stop);
        endpoint
    }

    /// A credential store client holding the certificate of `service`.
    pub fn credstore_client_as(
        &self,
        service: ServiceName,
    ) -> CredentialStoreServiceClient<Channel> {
        let channel = TonicEndpoint::from_shared(self.credstore.url.clone())
            .unwrap()
            .tls_config(load_tls(self.pki.path(), service).client_tls("localhost"))
            .unwrap()
            .connect_lazy();
        CredentialStoreServiceClient::new(channel)
    }

    /// A client sending `Authorization: Bearer <key>`.
    pub fn client_as(&self, key: &str) -> reqwest::Client {
        client_with_key(key)
    }

    /// A new API key of `tenant` with `roles`, made through the edge by the operator.
    pub async fn tenant_key(&self, tenant: &str, roles: &[&str]) -> String {
        let (status, body) = self
            .post(
                &format!("/tenants/{tenant}/api-keys"),
                serde_json::json!({"display_name": "test key", "roles": roles}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }

    /// Sends `body` with `method` to `path` through `client`; answers status and JSON body.
    pub async fn call_with(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// Stops the credential store (and waits until it has let go of its
    /// port); the registry and the edge keep running.
    pub async fn stop_credstore(&mut self) {
        if let Some(running) = self.credstore_running.take() {
            drop(running.stop);
            tokio::time::timeout(std::time::Duration::from_secs(10), running.task)
                .await
                .expect("the credential store stops")
                .unwrap();
        }
    }

    /// Starts the credential store again on its address, over the same data.
    pub async fn restart_credstore(&mut self) {
        self.stop_credstore().await;
        let listener = TcpListener::bind(self.credstore_addr).await.unwrap();
        self.credstore_running = Some(serve_credstore(
            self.pki.path(),
            listener,
            Arc::clone(&self.credstore_core),
        ));
    }

    /// Stops the registry; the edge keeps running.
    pub fn stop_registry(&mut self) {
        drop(self.stop.remove(0));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.edge)
    }

    /// Sends `body` (JSON) with `method` to `path` as the operator; answers status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(&self.http, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A registry client presenting `tls` (the suite's or a foreign one).
    pub async fn registry_client_with(
        &self,
        tls: ClientTlsConfig,
    ) -> TenantRegistryServiceClient<Channel> {
        let channel = TonicEndpoint::from_shared(format!("https://{}", self.registry_addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy();
        TenantRegistryServiceClient::new(channel)
    }

    /// A registry client holding the certificate of `service`.
    pub async fn registry_client_as(
        &self,
        service: ServiceName,
    ) -> TenantRegistryServiceClient<Channel> {
        self.registry_client_with(load_tls(self.pki.path(), service).client_tls("localhost"))
            .await
    }
}

/// Asserts `body` is a problem of `reason` with HTTP `status`, and returns its detail.
pub fn assert_problem(status: u16, body: &Value, want_status: u16, reason: &str) -> String {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(
        body["type"],
        format!("urn:locksmith:error:{reason}"),
        "{body}"
    );
    assert_eq!(body["status"], want_status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    body["detail"].as_str().unwrap_or_default().to_owned()
}

/// Each of `tenants` with an org `sales` holding a bot and a user `m1`.
pub async fn populate_tenants(suite: &Suite, tenants: &[&str]) {
    for t in tenants {
        create_tenant(suite, t).await;
        let org = serde_json::json!({"id": "sales", "display_name": "Sales"});
        assert_eq!(suite.post(&format!("/tenants/{t}/orgs"), org).await.0, 201);
        for kind in ["bots", "users"] {
            let member = serde_json::json!({"id": "m1", "display_name": "Member"});
            let path = format!("/tenants/{t}/orgs/sales/{kind}");
            assert_eq!(suite.post(&path, member).await.0, 201);
        }
    }
}

/// Creates tenant `id` through the edge.
pub async fn create_tenant(suite: &Suite, id: &str) -> Value {
    let (status, body) = suite
        .post(
            "/tenants",
            serde_json::json!({"id": id, "display_name": format!("Tenant {id}")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// An operator key made the way `locksmith api-key create --operator` does:
/// the registry's gRPC API, as `spiffe://locksmith/cli`.
async fn operator_key(pki: &Path, registry_addr: SocketAddr) -> String {
    let channel = TonicEndpoint::from_shared(format!("https://{registry_addr}"))
        .unwrap()
        .tls_config(load_tls(pki, ServiceName::Cli).client_tls("localhost"))
        .unwrap()
        .connect_lazy();
    ApiKeyServiceClient::new(channel)
        .create_api_key(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                owner: Some(pb::api_key::Owner::Operator(pb::OperatorOwner {})),
                display_name: "suite operator".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// A credential store over an in-memory embedded store, its master key file
/// in the suite's PKI directory (a temporary directory).
fn credstore_core(pki: &Path) -> Arc<SuiteCredStore> {
    let clock = locksmith_store::system_clock();
    Arc::new(CredStore::new(
        EmbeddedStore::in_memory(clock.clone()).unwrap(),
        MasterKeyWrapper::load_or_create(pki.join("credstore-master-key")).unwrap(),
        Arc::new(MemoryAudit::new()),
        clock,
    ))
}

/// Serves `core` over mTLS gRPC on `listener`.
fn serve_credstore(pki: &Path, listener: TcpListener, core: Arc<SuiteCredStore>) -> Running {
    let tls = load_tls(pki, ServiceName::CredentialStore);
    let (stop, stopped) = stop_signal();
    let task = tokio::spawn(async move {
        locksmith_credstore::server::serve(listener, &tls, core, stopped)
            .await
            .unwrap();
    });
    Running { stop, task }
}

/// How the suite's broker is set up; the default is the shipped catalog and
/// the default egress policy, no OAuth apps and no return URLs.
#[derive(Default)]
pub struct BrokerSetup {
    /// A catalog's text; `None`: `deploy/catalog/providers.toml`.
    pub catalog: Option<String>,
    /// The egress policy; `None`: the default (no internal addresses).
    pub egress: Option<EgressPolicy>,
    /// Per tenant, the return URLs its flows may end at.
    pub return_urls: ReturnUrls,
}

/// How the suite's token proxy is set up; the default is the default
/// egress policy (no internal addresses) and the default bounds.
#[derive(Clone, Default)]
pub struct ProxySetup {
    /// The egress policy; `None`: the default.
    pub egress: Option<EgressPolicy>,
    /// Bounds on calls to APIs.
    pub upstream: UpstreamConfig,
    /// The credential cache.
    pub cache: CacheConfig,
    /// Rate limits.
    pub limits: LimitsConfig,
}

/// Starts a token proxy on a free port over the suite's broker and
/// registry, auditing to `audit`.
async fn start_proxy(
    pki: &Path,
    broker: &Endpoint,
    registry_addr: SocketAddr,
    setup: ProxySetup,
    audit: Arc<locksmith_audit::MemoryAudit<CallEvent>>,
) -> (Endpoint, oneshot::Sender<()>) {
    let tls = load_tls(pki, ServiceName::Proxy);
    let egress = EgressClient::new(setup.egress.unwrap_or_default()).unwrap();
    let source = BrokerSource::connect_lazy(&broker.url, "localhost", &tls).unwrap();
    let registry =
        RegistrySource::connect_lazy(&format!("https://{registry_addr}"), "localhost", &tls)
            .unwrap();
    let max_message = usize::try_from(setup.upstream.max_unary_bytes).unwrap() + 256 * 1024;
    let cache = AccessCache::new(Arc::new(source.clone()), setup.cache);
    let changes = locksmith_proxy::changes::follow(source.client(), cache.invalidator());
    let forwarder = Forwarder::new(
        egress,
        cache,
        TenantLimits::new(Arc::new(registry), setup.limits),
        setup.upstream,
    );
    let api = ProxyApi::new(
        Arc::new(forwarder),
        audit,
        Arc::new(time::OffsetDateTime::now_utc),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stop_signal();
    tokio::spawn(async move {
        locksmith_proxy::server::serve(listener, &tls, api, max_message, stopped)
            .await
            .unwrap();
        changes.abort();
    });
    let endpoint = Endpoint {
        url: format!("https://{addr}"),
        server_name: "localhost".into(),
    };
    (endpoint, stop)
}

/// Starts a broker on `listener` over the suite's credential store and
/// registry, its pending authorizations in an embedded store in the
/// suite's directory.
async fn start_broker(
    listener: TcpListener,
    pki: &Path,
    credstore: &Endpoint,
    registry_addr: SocketAddr,
    public_url: &str,
    setup: BrokerSetup,
) -> (Endpoint, oneshot::Sender<()>) {
    let catalog = Arc::new(match setup.catalog {
        Some(text) => Catalog::parse(&text).unwrap(),
        None => Catalog::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/catalog/providers.toml"),
        )
        .unwrap(),
    });
    let tls = load_tls(pki, ServiceName::Broker);
    let egress = EgressClient::new(setup.egress.unwrap_or_default()).unwrap();
    let store_client = CredstoreClient::connect_lazy(&credstore.url, "localhost", &tls).unwrap();
    let refresher = Refresher::new(
        store_client.clone(),
        egress.clone(),
        catalog.clone(),
        RefreshConfig::default(),
    )
    .unwrap();
    let pending =
        EmbeddedStore::open(&pki.join("broker.db"), locksmith_store::system_clock()).unwrap();
    let registry =
        RegistryClient::connect_lazy(&format!("https://{registry_addr}"), "localhost", &tls)
            .unwrap();
    let broker = Arc::new(
        Broker::new(
            catalog,
            PendingStore::new(pending),
            store_client,
            egress,
            refresher,
            PublicUrl::parse(public_url).unwrap(),
            ReturnUrlPolicy::compile(&setup.return_urls).unwrap(),
        )
        .with_registry(registry),
    );
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stop_signal();
    tokio::spawn(async move {
        locksmith_broker::server::serve(
            listener,
            &tls,
            broker,
            locksmith_store::system_clock(),
            stopped,
        )
        .await
        .unwrap();
    });
    let endpoint = Endpoint {
        url: format!("https://{addr}"),
        server_name: "localhost".into(),
    };
    (endpoint, stop)
}

/// Starts an edge on `edge_listener` in front of the registry at
/// `registry_addr`, its public URL its own address.
async fn start_edge(
    pki: &Path,
    edge_listener: TcpListener,
    registry_addr: SocketAddr,
    credstore: &Endpoint,
    broker: &Endpoint,
    proxy: &Endpoint,
    auth: AuthConfig,
) -> (String, oneshot::Sender<()>) {
    let edge = format!("http://{}", edge_listener.local_addr().unwrap());
    let config = EdgeConfig {
        listen: edge_listener.local_addr().unwrap(),
        public_url: Some(edge.clone()),
        tls: TlsFiles::in_dir(pki, ServiceName::Edge),
        services: Services {
            registry: Endpoint {
                url: format!("https://{registry_addr}"),
                server_name: "localhost".into(),
            },
            credstore: credstore.clone(),
            broker: broker.clone(),
            proxy: proxy.clone(),
        },
        limits: Limits::default(),
        auth,
    };
    let backends = Backends::connect(&config.services, &config.tls.load().unwrap()).unwrap();
    let state = AppState::new(backends, &config).unwrap();
    let (stop_edge, edge_stopped) = stop_signal();
    tokio::spawn(async move {
        locksmith_edge::serve(edge_listener, state, &config, edge_stopped)
            .await
            .unwrap();
    });
    (edge, stop_edge)
}

/// Every method of the services in proto package `package`, from the
/// descriptors the suite serves: the matrices cover exactly these.
pub fn served_methods(package: &str) -> std::collections::BTreeSet<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(locksmith_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| f.service.iter())
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
}
