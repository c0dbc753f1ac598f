//! Serving the registry: mTLS, caller allow-lists, tracing, gRPC health and
//! reflection, graceful shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use locksmith_proto::registry::v1::tenant_registry_service_server::TenantRegistryServiceServer;
use locksmith_telemetry::GrpcServerTraceLayer;
use locksmith_tls::{AllowList, Allowed, MtlsAuthLayer, ServiceName, TlsMaterial};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::{api::RegistryApi, registry::Registry, store::RegistryStore};

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

/// Who may call what (design brief §2). Only the edge changes the registry;
/// the services that act for tenants may read it. Tenant workloads are not
/// admitted: the registry is administrative.
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
    }
    for rpc in WRITES {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Edge)],
        );
    }
    list
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material was rejected by the transport.
    #[error("TLS setup failed: {0}")]
    Tls(tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed while serving.
    #[error("gRPC server failed: {0}")]
    Transport(tonic::transport::Error),
}

/// Serves `registry` on `listener` until `shutdown` resolves, then drains
/// in-flight calls.
pub async fn serve<S: RegistryStore>(
    listener: TcpListener,
    tls: &TlsMaterial,
    registry: Arc<Registry<S>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let registry_service =
        TenantRegistryServiceServer::new(RegistryApi::new(Arc::clone(&registry)));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(locksmith_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let probe = tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = match registry.ping().await {
                Ok(()) => ServingStatus::Serving,
                Err(e) => {
                    tracing::warn!(error = %e, "registry storage probe failed");
                    ServingStatus::NotServing
                }
            };
            if last != Some(status) {
                health
                    .set_service_status("locksmith.registry.v1.TenantRegistryService", status)
                    .await;
                health.set_service_status("", status).await;
                last = Some(status);
            }
            tokio::time::sleep(HEALTH_PROBE_EVERY).await;
        }
    });
    let result = Server::builder()
        .tls_config(tls.server_tls())
        .map_err(ServeError::Tls)?
        .layer(GrpcServerTraceLayer)
        .layer(MtlsAuthLayer::new(allow_list()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(registry_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(ServeError::Transport);
    probe.abort();
    result
}
