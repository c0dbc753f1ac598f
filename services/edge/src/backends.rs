//! gRPC clients for the services behind the edge: one lazily connected mTLS
//! channel per service, with W3C trace context injected into every call.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use locksmith_proto::{
    broker::v1::o_auth_broker_service_client::OAuthBrokerServiceClient,
    credstore::v1::credential_store_service_client::CredentialStoreServiceClient,
    proxy::v1::token_proxy_service_client::TokenProxyServiceClient,
    registry::v1::{
        api_key_service_client::ApiKeyServiceClient,
        tenant_registry_service_client::TenantRegistryServiceClient,
    },
};
use locksmith_telemetry::{GrpcClientTraceLayer, GrpcTraceService};
use locksmith_tls::TlsMaterial;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::ServiceBuilder;

use crate::config::{Endpoint, Services};

/// A channel that traces every call.
pub type TracedChannel = GrpcTraceService<Channel>;

/// Connect timeout for a backend; calls themselves are bounded by the edge's request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 connections to the token proxy.
const PROXY_CONNECTIONS: usize = 4;
/// Largest message exchanged with the token proxy (its unary limit, 4 MiB,
/// plus a head).
const PROXY_MESSAGE_BYTES: usize = 4 * 1024 * 1024 + 256 * 1024;
/// How long `/ready` waits for one health answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The edge's clients.
#[derive(Clone)]
pub struct Backends {
    /// The tenant registry.
    pub registry: TenantRegistryServiceClient<TracedChannel>,
    /// The registry's API keys.
    pub api_keys: ApiKeyServiceClient<TracedChannel>,
    /// The credential store.
    pub credstore: CredentialStoreServiceClient<TracedChannel>,
    /// The OAuth broker.
    pub broker: OAuthBrokerServiceClient<TracedChannel>,
    /// The token proxy, over several connections (see [`Backends::proxy`]).
    proxies: Arc<[TokenProxyServiceClient<TracedChannel>]>,
    next_proxy: Arc<AtomicUsize>,
    health: Vec<(&'static str, HealthClient<TracedChannel>)>,
}

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
#[error("backend {name} at {url}: {source}")]
pub struct BackendError {
    name: &'static str,
    url: String,
    source: tonic::transport::Error,
}

fn channel(
    name: &'static str,
    endpoint: &Endpoint,
    tls: &TlsMaterial,
) -> Result<TracedChannel, BackendError> {
    let err = |source| BackendError {
        name,
        url: endpoint.url.clone(),
        source,
    };
    let channel = TonicEndpoint::from_shared(endpoint.url.clone())
        .map_err(err)?
        .tls_config(tls.client_tls(&endpoint.server_name))
        .map_err(err)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy();
    Ok(ServiceBuilder::new()
        .layer(GrpcClientTraceLayer)
        .service(channel))
}

impl Backends {
    /// Clients for every configured service. Channels connect on first use,
    /// so the edge starts (and answers `/health`) while a service is down.
    pub fn connect(services: &Services, tls: &TlsMaterial) -> Result<Self, BackendError> {
        let registry = channel("registry", &services.registry, tls)?;
        let credstore = channel("credstore", &services.credstore, tls)?;
        let broker = channel("broker", &services.broker, tls)?;
        // Proxied calls are the hot path: spread over a few HTTP/2
        // connections, whose frames each one task reads and writes, so one
        // connection's task is never the bottleneck on a busy edge.
        let proxy = channel("proxy", &services.proxy, tls)?;
        let mut proxy_channels = vec![proxy.clone()];
        for _ in 1..PROXY_CONNECTIONS {
            proxy_channels.push(channel("proxy", &services.proxy, tls)?);
        }
        Ok(Self {
            registry: TenantRegistryServiceClient::new(registry.clone()),
            api_keys: ApiKeyServiceClient::new(registry.clone()),
            credstore: CredentialStoreServiceClient::new(credstore.clone()),
            broker: OAuthBrokerServiceClient::new(broker.clone()),
            // Streamed calls carry chunks; a unary-sized first message is
            // the largest one (the proxy's own limit decides the rest).
            proxies: proxy_channels
                .into_iter()
                .map(|c| {
                    TokenProxyServiceClient::new(c)
                        .max_decoding_message_size(PROXY_MESSAGE_BYTES)
                        .max_encoding_message_size(PROXY_MESSAGE_BYTES)
                })
                .collect(),
            next_proxy: Arc::new(AtomicUsize::new(0)),
            health: vec![
                ("registry", HealthClient::new(registry)),
                ("credstore", HealthClient::new(credstore)),
                ("broker", HealthClient::new(broker)),
                ("proxy", HealthClient::new(proxy)),
            ],
        })
    }

    /// A token proxy client, over the next of its connections in turn.
    pub fn proxy(&self) -> TokenProxyServiceClient<TracedChannel> {
        let n = self.next_proxy.fetch_add(1, Ordering::Relaxed);
        self.proxies[n % self.proxies.len()].clone()
    }

    /// Each service's name and whether it reports SERVING.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let checks = self.health.iter().map(|(name, client)| {
            let mut client = client.clone();
            async move {
                let call = client.check(HealthCheckRequest {
                    service: String::new(),
                });
                let outcome = match tokio::time::timeout(HEALTH_TIMEOUT, call).await {
                    Err(_) => Err("no answer in time".to_owned()),
                    Ok(Err(status)) => Err(format!("{:?}", status.code())),
                    Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
                    Ok(Ok(_)) => Err("not serving".to_owned()),
                };
                (*name, outcome)
            }
        });
        futures::future::join_all(checks).await
    }
}
