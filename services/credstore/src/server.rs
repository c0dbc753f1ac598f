//! Serving the credential store: mTLS, caller allow-lists, tracing, gRPC
//! health and reflection, graceful shutdown (modelled on the registry's).

use std::{future::Future, sync::Arc, time::Duration};

use locksmith_auth::PrincipalLayer;
use locksmith_crypto::KeyWrapper;
use locksmith_proto::credstore::v1::credential_store_service_server::{
    CredentialStoreServiceServer, SERVICE_NAME,
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

use crate::{CredStore, grpc::CredStoreApi};

const SERVICE: &str = "/locksmith.credstore.v1.CredentialStoreService/";
/// Calls that answer secret values.
const VALUE_READS: &[&str] = &["GetSecret", "ResolveSecret", "BatchResolveSecrets"];
/// Calls that change secrets.
const WRITES: &[&str] = &[
    "PutSecret",
    "DeleteSecret",
    "UndeleteSecret",
    "DestroySecretVersions",
];
/// Calls that change connection records, and the listings (the broker's alone).
const CONNECTION_WRITES: &[&str] = &[
    "PutConnection",
    "ListConnections",
    "DeleteConnection",
    "ListTenantConnections",
];
/// Calls on data keys.
const KEY_OPS: &[&str] = &["ProvisionTenantKey", "RotateTenantKey", "ShredTenantKey"];
/// How often storage health is probed for `grpc.health.v1`.
const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(5);
/// The `grpc.health.v1` names whose status follows the storage probe: the
/// server as a whole and the credential store service.
const HEALTH_NAMES: [&str; 2] = ["", SERVICE_NAME];

/// Who may call what (design brief §2), deny by default. Values go to the
/// services that use them on a tenant's behalf and to tenant workloads,
/// which `CredStore` confines to their own tenant; the registry never reads
/// a value. Secrets are changed through the edge or by the tenant's own
/// workloads: broker and proxy only consume them. Keys follow tenants, so
/// the registry (which creates and deletes tenants) and the edge (operator
/// calls) manage them; `CredStore` further requires an operator or a suite
/// service acting for itself. Connection records (tokens) are the broker's;
/// the proxy reads them.
pub fn allow_list() -> AllowList {
    let consumers = [
        Allowed::Service(ServiceName::Edge),
        Allowed::Service(ServiceName::Broker),
        Allowed::Service(ServiceName::Proxy),
        Allowed::AnyWorkload,
    ];
    let mut list = AllowList::new()
        .allow("/grpc.health.v1.Health/*", [Allowed::AnyIdentity])
        .allow(
            "/grpc.reflection.v1.ServerReflection/*",
            [Allowed::AnyService],
        )
        .allow(&format!("{SERVICE}ListSecrets"), consumers.clone());
    for rpc in VALUE_READS {
        list = list.allow(&format!("{SERVICE}{rpc}"), consumers.clone());
    }
    for rpc in WRITES {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Edge), Allowed::AnyWorkload],
        );
    }
    // The operator's `locksmith migrate env` reads and writes system secrets
    // (as the operator it forwards) and provisions the system key;
    // `locksmith keys rotate` rotates a tenant's or the system's key.
    for rpc in [
        "GetSecret",
        "PutSecret",
        "ProvisionTenantKey",
        "RotateTenantKey",
    ] {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Cli)],
        );
    }
    for rpc in KEY_OPS {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [
                Allowed::Service(ServiceName::Registry),
                Allowed::Service(ServiceName::Edge),
            ],
        );
    }
    // Deleting an org, bot or user erases its material: the registry's call.
    list = list.allow(
        &format!("{SERVICE}EraseScope"),
        [Allowed::Service(ServiceName::Registry)],
    );
    // Token values: the broker keeps them, the proxy injects them; nobody
    // else ever reads one (the edge shows connections through the broker).
    list = list.allow(
        &format!("{SERVICE}GetConnection"),
        [
            Allowed::Service(ServiceName::Broker),
            Allowed::Service(ServiceName::Proxy),
        ],
    );
    for rpc in CONNECTION_WRITES {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Broker)],
        );
    }
    list
}

/// Why the server stopped with an error (shared by every suite service).
pub use locksmith_health::ServeError;

/// Serves `credstore` on `listener` until `shutdown` resolves, then drains
/// in-flight calls.
pub async fn serve<S: DocumentStore, W: KeyWrapper + 'static>(
    listener: TcpListener,
    tls: &TlsMaterial,
    credstore: Arc<CredStore<S, W>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = health().await;
    let service = CredentialStoreServiceServer::new(CredStoreApi::new(Arc::clone(&credstore)));
    // The descriptor set holds every Locksmith service; advertise only the
    // ones served here, so reflection does not offer the registry's RPCs.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(locksmith_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(SERVICE_NAME)
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
        let credstore = Arc::clone(&credstore);
        async move { credstore.store().ping().await }
    }));
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
        "credential storage",
        ping,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use locksmith_tls::Identity;

    use super::*;

    fn path(rpc: &str) -> String {
        format!("{SERVICE}{rpc}")
    }

    #[test]
    fn the_allow_list_denies_by_default() {
        let list = allow_list();
        let svc = |s| Identity::Service(s);
        let workload = Identity::Workload {
            tenant: "acme".into(),
            name: "billing".into(),
        };
        for rpc in VALUE_READS.iter().chain(["ListSecrets"].iter()) {
            for who in [ServiceName::Edge, ServiceName::Broker, ServiceName::Proxy] {
                assert!(list.permits(&path(rpc), &svc(who)), "{rpc} {who:?}");
            }
            assert!(list.permits(&path(rpc), &workload), "{rpc}");
            assert!(
                !list.permits(&path(rpc), &svc(ServiceName::Registry)),
                "{rpc}"
            );
        }
        for rpc in WRITES {
            assert!(list.permits(&path(rpc), &svc(ServiceName::Edge)));
            assert!(list.permits(&path(rpc), &workload));
            for who in [
                ServiceName::Broker,
                ServiceName::Proxy,
                ServiceName::Registry,
            ] {
                assert!(!list.permits(&path(rpc), &svc(who)), "{rpc} {who:?}");
            }
        }
        // The operator's `locksmith migrate env` and `keys rotate`: these
        // four, nothing else (never shredding, never a resolve).
        for rpc in VALUE_READS.iter().chain(WRITES).chain(KEY_OPS) {
            let allowed = [
                "GetSecret",
                "PutSecret",
                "ProvisionTenantKey",
                "RotateTenantKey",
            ]
            .contains(rpc);
            assert_eq!(
                list.permits(&path(rpc), &svc(ServiceName::Cli)),
                allowed,
                "{rpc}"
            );
        }
        for rpc in KEY_OPS {
            assert!(list.permits(&path(rpc), &svc(ServiceName::Registry)));
            assert!(list.permits(&path(rpc), &svc(ServiceName::Edge)));
            assert!(!list.permits(&path(rpc), &svc(ServiceName::Proxy)), "{rpc}");
            assert!(!list.permits(&path(rpc), &workload), "{rpc}");
        }
        for rpc in ["GetConnection"].iter().chain(CONNECTION_WRITES) {
            assert!(list.permits(&path(rpc), &svc(ServiceName::Broker)), "{rpc}");
            assert_eq!(
                list.permits(&path(rpc), &svc(ServiceName::Proxy)),
                *rpc == "GetConnection",
                "{rpc}"
            );
            for who in [ServiceName::Edge, ServiceName::Registry, ServiceName::Cli] {
                assert!(!list.permits(&path(rpc), &svc(who)), "{rpc} {who:?}");
            }
            assert!(!list.permits(&path(rpc), &workload), "{rpc}");
        }
        for who in [ServiceName::Edge, ServiceName::Broker, ServiceName::Cli] {
            assert!(!list.permits(&path("EraseScope"), &svc(who)), "{who:?}");
        }
        assert!(list.permits(&path("EraseScope"), &svc(ServiceName::Registry)));
        assert!(!list.permits(&path("EraseScope"), &workload));
        assert!(!list.permits(&path("Unknown"), &svc(ServiceName::Edge)));
    }
}
