//! Serving the registry: mTLS, caller allow-lists, tracing, gRPC health and
//! reflection, graceful shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use locksmith_proto::registry::v1::tenant_registry_service_server::{
    SERVICE_NAME, TenantRegistryServiceServer,
};
use locksmith_store::DocumentStore;
use locksmith_telemetry::GrpcServerTraceLayer;
use locksmith_tls::{AllowList, Allowed, MtlsAuthLayer, ServiceName, TlsMaterial};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::{
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};

use locksmith_auth::PrincipalLayer;
use locksmith_proto::registry::v1::api_key_service_server::ApiKeyServiceServer;

use crate::{
    api::RegistryApi,
    api_keys::{ApiKeyApi, secret::KeyHasher},
    registry::Registry,
};

const SERVICE: &str = "/locksmith.registry.v1.TenantRegistryService/";
const READS: &[&str] = &[
    "GetTenant",
    "ListTenants",
    "GetOrg",
    "ListOrgs",
    "GetBot",
    "ListBots",
    "GetUser",
    "ListUsers",
];
const WRITES: &[&str] = &[
    "CreateTenant",
    "UpdateTenant",
    "DeleteTenant",
    "CreateOrg",
    "UpdateOrg",
    "DeleteOrg",
    "CreateBot",
    "UpdateBot",
    "DeleteBot",
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
];
/// How often storage health is probed for `grpc.health.v1`.
const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(5);
/// The `grpc.health.v1` names whose status follows the storage probe: the
/// server as a whole and the registry service.
const HEALTH_NAMES: [&str; 2] = ["", SERVICE_NAME];

const API_KEYS: &str = "/locksmith.registry.v1.ApiKeyService/";

/// Who may call what (design brief §2). Only the edge changes the registry;
/// the services that act for tenants may read it, and so may tenant
/// workloads, which the handlers confine to their own tenant (they may not
/// list every tenant). API keys are managed through the edge or by an
/// operator's `locksmith` command; only the edge verifies them.
pub fn allow_list() -> AllowList {
    let readers = [
        Allowed::Service(ServiceName::Edge),
        Allowed::Service(ServiceName::CredentialStore),
        Allowed::Service(ServiceName::Broker),
        Allowed::Service(ServiceName::Proxy),
    ];
    let mut list = AllowList::new()
        .allow("/grpc.health.v1.Health/*", [Allowed::AnyIdentity])
        .allow(
            "/grpc.reflection.v1.ServerReflection/*",
            [Allowed::AnyService],
        );
    for rpc in READS {
        list = list.allow(&format!("{SERVICE}{rpc}"), readers.clone());
        if *rpc != "ListTenants" {
            list = list.allow(&format!("{SERVICE}{rpc}"), [Allowed::AnyWorkload]);
        }
    }
    for rpc in ["CreateApiKey", "ListApiKeys", "RevokeApiKey"] {
        list = list.allow(
            &format!("{API_KEYS}{rpc}"),
            [
                Allowed::Service(ServiceName::Edge),
                Allowed::Service(ServiceName::Cli),
            ],
        );
    }
    list = list.allow(
        &format!("{API_KEYS}VerifyApiKey"),
        [Allowed::Service(ServiceName::Edge)],
    );
    for rpc in WRITES {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Edge)],
        );
    }
    list
}

/// Why the server stopped with an error (shared by every suite service).
pub use locksmith_health::ServeError;

/// Serves `registry` on `listener` until `shutdown` resolves, then drains
/// in-flight calls.
pub async fn serve<S: DocumentStore>(
    listener: TcpListener,
    tls: &TlsMaterial,
    registry: Arc<Registry<S>>,
    hasher: Arc<KeyHasher>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = health().await;
    let registry_service =
        TenantRegistryServiceServer::new(RegistryApi::new(Arc::clone(&registry)));
    let api_key_service = ApiKeyServiceServer::new(ApiKeyApi::new(Arc::clone(&registry), hasher));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(locksmith_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // The descriptor set holds every Locksmith service; list only ours.
        .with_service_name(SERVICE_NAME)
        .with_service_name("locksmith.registry.v1.ApiKeyService")
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    // Spans are named only after the methods served here (the same
    // descriptors reflection lists); any other `:path` is `grpc unknown`.
    let trace = GrpcServerTraceLayer::from_file_descriptor_sets(&[
        locksmith_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ])?;
    let probe = tokio::spawn(probe_storage(health, move || {
        let registry = Arc::clone(&registry);
        async move { registry.ping().await }
    }));
    let result = Server::builder()
        .tls_config(tls.server_tls())
        .map_err(ServeError::Tls)?
        .layer(trace)
        .layer(MtlsAuthLayer::new(allow_list()))
        .layer(PrincipalLayer::default())
        .add_service(health_service)
        .add_service(reflection)
        .add_service(registry_service)
        .add_service(api_key_service)
        .serve_with_incoming_shutdown(locksmith_tls::incoming(listener), shutdown)
        .await
        .map_err(ServeError::Transport);
    probe.abort();
    result
}

/// The health service and its reporter, NOT_SERVING for [`HEALTH_NAMES`]
/// until [`probe_storage`] has heard from storage.
async fn health() -> (HealthReporter, HealthServer<impl Health>) {
    locksmith_health::not_serving(&HEALTH_NAMES).await
}

/// Probes storage with `ping` every [`HEALTH_PROBE_EVERY`] and reports the
/// outcome for [`HEALTH_NAMES`], on every change.
async fn probe_storage<F, Fut, E>(health: HealthReporter, ping: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    locksmith_health::probe(
        health,
        &HEALTH_NAMES,
        HEALTH_PROBE_EVERY,
        "registry storage",
        ping,
    )
    .await;
}

#[cfg(test)]
mod tests;
