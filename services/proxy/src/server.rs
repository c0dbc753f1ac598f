//! Serving the proxy: mTLS, per-RPC caller allow-lists, the principal
//! layer, tracing, gRPC health and reflection, graceful shutdown (as the
//! other suite services do).

use std::future::Future;

use locksmith_auth::PrincipalLayer;
use locksmith_proto::proxy::v1::token_proxy_service_server::{
    SERVICE_NAME, TokenProxyServiceServer,
};
use locksmith_telemetry::GrpcServerTraceLayer;
use locksmith_tls::{AllowList, Allowed, MtlsAuthLayer, ServiceName, TlsMaterial};
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::grpc::ProxyApi;

const SERVICE: &str = "/locksmith.proxy.v1.TokenProxyService/";
const RPCS: &[&str] = &["Call", "StreamCall"];

/// Why the server stopped with an error (shared by every suite service).
pub use locksmith_health::ServeError;

/// Who may call what (design brief §2), deny by default: the edge for its
/// outside callers, and tenant workloads with their own certificates
/// (confined to their tenant by the principal layer and the forwarder).
pub fn allow_list() -> AllowList {
    let mut list = AllowList::new()
        .allow("/grpc.health.v1.Health/*", [Allowed::AnyIdentity])
        .allow(
            "/grpc.reflection.v1.ServerReflection/*",
            [Allowed::AnyService],
        );
    for rpc in RPCS {
        list = list.allow(
            &format!("{SERVICE}{rpc}"),
            [Allowed::Service(ServiceName::Edge), Allowed::AnyWorkload],
        );
    }
    list
}

/// Serves `api` on `listener` until `shutdown` resolves, then drains
/// in-flight calls. `max_message_bytes` bounds one gRPC message (a unary
/// call's body plus its head).
pub async fn serve(
    listener: TcpListener,
    tls: &TlsMaterial,
    api: ProxyApi,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let service = TokenProxyServiceServer::new(api)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
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
    // The proxy keeps no state of its own to probe: it serves once it
    // listens; a broker or API outage is answered per call.
    for name in ["", SERVICE_NAME] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
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
    drop(health);
    result
}

#[cfg(test)]
mod tests {
    use locksmith_tls::Identity;

    use super::*;

    #[test]
    fn the_edge_and_workloads_call_the_proxy_and_nobody_else() {
        let list = allow_list();
        let workload = Identity::Workload {
            tenant: "acme".into(),
            name: "billing".into(),
        };
        for rpc in RPCS {
            let path = format!("{SERVICE}{rpc}");
            assert!(list.permits(&path, &Identity::Service(ServiceName::Edge)));
            assert!(list.permits(&path, &workload));
            for other in [
                ServiceName::Registry,
                ServiceName::CredentialStore,
                ServiceName::Broker,
                ServiceName::Cli,
                ServiceName::Proxy,
            ] {
                assert!(
                    !list.permits(&path, &Identity::Service(other)),
                    "{rpc} {other:?}"
                );
            }
        }
    }
}
