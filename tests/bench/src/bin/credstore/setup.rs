//! What the measurements need in place: the two served credential stores,
//! the secret they resolve, gRPC clients, and the bare KV v2 read beside
//! them, each checked once before anything is timed.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::{Context, ensure};
use locksmith_auth::Principal;
use locksmith_credstore::{CacheConfig, CredStore, JsonLinesAudit, server};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_store::{OpenBaoConfig, OpenBaoStore, system_clock};
use locksmith_tls::{ServiceName, TlsFiles, TlsMaterial};
use prost::Message as _;
use time::OffsetDateTime;
use tokio::{net::TcpListener, runtime::Handle, sync::oneshot, task::JoinHandle};
use tonic::{
    Request,
    transport::{Channel, Endpoint},
};

/// The secret resolved: a bot's own LLM credentials, stored at the bot
/// scope, so an uncached resolve is exactly one storage read.
pub const RESOURCE: &str = "tenants/bench/orgs/o1/bots/b1/secrets/llm";
/// The scope that must answer [`RESOURCE`].
const BOT_SCOPE: &str = "tenants/bench/orgs/o1/bots/b1";
/// The tenant whose key seals [`RESOURCE`].
const TENANT: &str = "tenants/bench";

pub type Client = CredentialStoreServiceClient<Channel>;
pub type Store = CredStore<OpenBaoStore, MasterKeyWrapper>;

/// A credential store served on loopback until [`Served::stop`].
pub struct Served {
    pub addr: SocketAddr,
    /// The store behind the server, for the in-process rows.
    pub credstore: Arc<Store>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), server::ServeError>>,
}

impl Served {
    /// Serves a store with `cache` over `bao`, as the binary builds it, on
    /// the servers' `runtime`.
    pub async fn start(
        runtime: &Handle,
        bao: &OpenBaoConfig,
        pki: &Path,
        audit: &Arc<JsonLinesAudit>,
        cache: CacheConfig,
    ) -> anyhow::Result<Self> {
        let credstore = Arc::new(
            CredStore::new(
                OpenBaoStore::new(bao)?,
                MasterKeyWrapper::load_or_create(pki.join("master-key"))?,
                audit.clone(),
                system_clock(),
            )
            .with_resolve_cache(cache),
        );
        let tls = TlsFiles::in_dir(pki, ServiceName::CredentialStore)
            .load_for_service(ServiceName::CredentialStore, OffsetDateTime::now_utc())?;
        // Bound inside the servers' runtime, whose I/O driver then polls it
        // (`server::serve` sets TCP_NODELAY on what it accepts).
        let listener = runtime
            .spawn(TcpListener::bind("127.0.0.1:0"))
            .await?
            .context("binding a loopback port")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&credstore);
        let task = runtime.spawn(async move {
            server::serve(listener, &tls, served, async move {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Self {
            addr,
            credstore,
            stop,
            task,
        })
    }

    /// Stops serving and answers how serving ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        Ok(self.task.await??)
    }
}

/// A few hundred bytes of fields, as a bot's LLM secret holds.
pub fn payload() -> Vec<(String, String)> {
    let key: String = (0..256u32)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(i * 7 % 36) as usize]))
        .collect();
    vec![
        ("provider".into(), "openai".into()),
        ("model".into(), "gpt-4o-mini".into()),
        ("api-key".into(), format!("sk-bench-{key}")),
    ]
}

/// A client on a connection of its own, with the identity in `tls`.
pub async fn connect(addr: SocketAddr, tls: &TlsMaterial) -> anyhow::Result<Client> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls.client_tls("localhost"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(CredentialStoreServiceClient::new(channel))
}

/// `n` clients, each on its own HTTP/2 connection.
pub async fn clients(
    addr: SocketAddr,
    tls: &TlsMaterial,
    n: usize,
) -> anyhow::Result<Arc<Vec<Client>>> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(connect(addr, tls).await?);
    }
    Ok(Arc::new(all))
}

/// The tenant's key and the bot's secret, written through the edge's
/// identity on an operator's behalf (as an operator's HTTP call would be).
pub async fn seed(served: &Served, pki: &Path, fields: &[(String, String)]) -> anyhow::Result<()> {
    let edge = TlsFiles::in_dir(pki, ServiceName::Edge).load()?;
    let mut edge = connect(served.addr, &edge).await?;
    edge.provision_tenant_key(as_operator(pb::ProvisionTenantKeyRequest {
        owner: TENANT.into(),
    }))
    .await
    .context("provisioning the tenant key")?;
    let put = pb::PutSecretRequest {
        name: RESOURCE.into(),
        fields: fields.iter().cloned().collect(),
        expected_version: 0,
        unconditional: false,
    };
    edge.put_secret(as_operator(put))
        .await
        .context("writing the secret")?;
    Ok(())
}

/// A call from the edge on an operator's behalf.
fn as_operator<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    locksmith_auth::forward(
        &mut request,
        &Principal::Operator {
            subject: "api-key:bench".into(),
        },
    );
    request
}

/// Resolves once as the proxy and checks the answer; answers its encoded size.
pub async fn check_resolve(client: &Client, fields: &[(String, String)]) -> anyhow::Result<usize> {
    let answer = client
        .clone()
        .resolve_secret(pb::ResolveSecretRequest {
            name: RESOURCE.into(),
        })
        .await?
        .into_inner();
    ensure!(
        answer.answering_scope == BOT_SCOPE,
        "answered by {:?}",
        answer.answering_scope
    );
    let secret = answer.secret.as_ref().context("no secret in the answer")?;
    for (k, v) in fields {
        ensure!(secret.fields.get(k) == Some(v), "field {k} differs");
    }
    Ok(answer.encoded_len())
}

/// The bare KV v2 read: a plain keep-alive HTTP client asking OpenBao for
/// the very document a cold resolve reads, with the token.
pub struct Bare {
    pub http: reqwest::Client,
    /// `<addr>/v1/<mount>/data/<prefix>/<storage path>`.
    pub url: String,
    pub token: String,
}

impl Bare {
    /// Reads the stored document once; checks it is sealed; answers the
    /// body size.
    pub async fn check(&self, fields: &[(String, String)]) -> anyhow::Result<usize> {
        let url = &self.url;
        let response = self
            .http
            .get(url)
            .header("X-Vault-Token", &self.token)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        let body = response.bytes().await?;
        let text = String::from_utf8_lossy(&body);
        ensure!(text.contains("\"b\""), "not a store document: {text}");
        for (_, v) in fields {
            ensure!(
                !text.contains(v.as_str()),
                "plaintext in the stored document"
            );
        }
        Ok(body.len())
    }
}
