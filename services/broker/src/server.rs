//! Serving the broker: mTLS, per-RPC caller allow-lists, the principal
//! layer, tracing, gRPC health and reflection, graceful shutdown (modelled
//! on the credential store's).

use std::{future::Future, sync::Arc, time::Duration};

use locksmith_auth::PrincipalLayer;
use locksmith_proto::broker::v1::o_auth_broker_service_server::{
    OAuthBrokerServiceServer, SERVICE_NAME,
};
use locksmith_store::{Clock, DocumentStore};
use locksmith_telemetry::GrpcServerTraceLayer;
use locksmith_tls::{AllowList, Allowed, MtlsAuthLayer, ServiceName, TlsMaterial};
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::{flows::Broker, grpc::BrokerApi};

const SERVICE: &str = "/locksmith.broker.v1.OAuthBrokerService/";
/// What the edge calls for outside callers (everything but token values).
const EDGE_RPCS: &[&str] = &[
    "StartAuthorization",
    "CompleteAuthorization",
    "StoreCredentials",
    "GetConnection",
    "ListConnections",
    "RefreshConnection",
    "DeleteConnection",
    "CreateCustomProvider",
    "GetCustomProvider",
    "ListCustomProviders",
    "UpdateCustomProvider",
    "DeleteCustomProvider",
    "ListTenantHealth",
];
/// What the token proxy calls: the credential to inject, and the
/// connection's metadata (how the API takes it, its status).
const PROXY_RPCS: &[&str] = &["GetAccessToken", "GetConnection", "WatchConnectionChanges"];
/// What the tenant registry calls: erasing a deleted tenant's custom
/// providers, in its deletion sweep.
const REGISTRY_RPCS: &[&str] = &["EraseTenantProviders"];
/// How often storage health is probed for `grpc.health.v1`.
const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(5);
/// The `grpc.health.v1` names whose status follows the storage probe.
const HEALTH_NAMES: [&str; 2] = ["", SERVICE_NAME];
/// How often used and expired pending authorizations are erased.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Most erased per round, so one round stays short.
const PURGE_LIMIT: usize = 1000;

/// Who may call what (design brief §2), deny by default. Token values leave
/// the broker only through GetAccessToken, to the token proxy; the edge
/// drives everything else for outside callers (the callback included, as an
/// anonymous route trusted through the state). Tenant workloads do not call
/// the broker directly.
pub fn allow_list() -> AllowList {
    let mut list = AllowList::new()
        .allow("/grpc.health.v1.Health/*", [Allowed::AnyIdentity])
        .allow(
            "/grpc.reflection.v1.ServerReflection/*",
            [Allowed::AnyService],
        );
    for rpc in EDGE_RPCS {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Edge)],
        );
    }
    for rpc in PROXY_RPCS {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Proxy)],
        );
    }
    for rpc in REGISTRY_RPCS {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Registry)],
        );
    }
    list
}

/// Why the server stopped with an error (shared by every suite service).
pub use locksmith_health::ServeError;

/// Serves `broker` on `listener` until `shutdown` resolves, then drains
/// in-flight calls. Also probes storage for health and purges used or
/// expired pending authorizations in the background.
pub async fn serve<S: DocumentStore>(
    listener: TcpListener,
    tls: &TlsMaterial,
    broker: Arc<Broker<S>>,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = locksmith_health::not_serving(&HEALTH_NAMES).await;
    let service = OAuthBrokerServiceServer::new(BrokerApi::new(Arc::clone(&broker), clock.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(locksmith_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(SERVICE_NAME)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let trace = GrpcServerTraceLayer::from_file_descriptor_sets(&[
        locksmith_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ])?;
    let probed = Arc::clone(&broker);
    let probe = tokio::spawn(locksmith_health::probe(
        health,
        &HEALTH_NAMES,
        HEALTH_PROBE_EVERY,
        "broker storage",
        move || {
            let broker = Arc::clone(&probed);
            async move { broker.pending().store().ping().await }
        },
    ));
    let purge = tokio::spawn(purge_pending(Arc::clone(&broker), clock));
    let result = Server::builder()
        .tls_config(tls.server_tls())
        .map_err(ServeError::Tls)?
        .layer(trace)
        .layer(MtlsAuthLayer::new(allow_list()))
        .layer(PrincipalLayer::default())
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(locksmith_tls::incoming(listener), shutdown)
        .await
        .map_err(ServeError::Transport);
    probe.abort();
    purge.abort();
    result
}

/// Erases used and expired pending authorizations now and then; every
/// replica may run it (erasing is idempotent).
async fn purge_pending<S: DocumentStore>(broker: Arc<Broker<S>>, clock: Clock) {
    loop {
        tokio::time::sleep(PURGE_EVERY).await;
        match broker.pending().purge(clock(), PURGE_LIMIT).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(erased = n, "pending authorizations purged"),
            Err(e) => tracing::warn!(error = %e, "cannot purge pending authorizations"),
        }
    }
}

#[cfg(test)]
mod tests {
    use locksmith_tls::Identity;

    use super::*;

    fn path(rpc: &str) -> String {
        format!("{SERVICE}{rpc}")
    }

    #[test]
    fn token_values_reach_the_proxy_only_and_the_edge_drives_the_rest() {
        let list = allow_list();
        let svc = Identity::Service;
        let workload = Identity::Workload {
            tenant: "acme".into(),
            name: "billing".into(),
        };
        for rpc in EDGE_RPCS {
            assert!(list.permits(&path(rpc), &svc(ServiceName::Edge)), "{rpc}");
            assert_eq!(
                list.permits(&path(rpc), &svc(ServiceName::Proxy)),
                *rpc == "GetConnection",
                "{rpc}"
            );
        }
        assert!(list.permits(&path("GetAccessToken"), &svc(ServiceName::Proxy)));
        assert!(!list.permits(&path("GetAccessToken"), &svc(ServiceName::Edge)));
        for rpc in EDGE_RPCS.iter().chain(["GetAccessToken"].iter()) {
            for who in [
                ServiceName::Registry,
                ServiceName::CredentialStore,
                ServiceName::Cli,
                ServiceName::Broker,
            ] {
                assert!(!list.permits(&path(rpc), &svc(who)), "{rpc} {who:?}");
            }
            assert!(!list.permits(&path(rpc), &workload), "{rpc}");
        }
        // The change announcements go to the proxy only; the erasure of a
        // deleted tenant's providers is the registry's only.
        let only = [
            ("WatchConnectionChanges", ServiceName::Proxy),
            ("EraseTenantProviders", ServiceName::Registry),
        ];
        for (rpc, caller) in only {
            for who in [
                ServiceName::Edge,
                ServiceName::Proxy,
                ServiceName::Registry,
                ServiceName::CredentialStore,
                ServiceName::Cli,
                ServiceName::Broker,
            ] {
                assert_eq!(
                    list.permits(&path(rpc), &svc(who)),
                    who == caller,
                    "{rpc} {who:?}"
                );
            }
            assert!(!list.permits(&path(rpc), &workload), "{rpc}");
        }
        assert!(!list.permits(&path("Unknown"), &svc(ServiceName::Edge)));
        assert!(list.permits("/grpc.health.v1.Health/Check", &workload));
    }
}
