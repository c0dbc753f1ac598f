//! The registry as typed gRPC callers see it: rich error details, health and
//! reflection.

use std::time::Duration;

use locksmith_proto::registry::v1 as pb;
use locksmith_tls::ServiceName;
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

use crate::harness::{Suite, load_tls, spans};

#[tokio::test]
async fn errors_carry_error_info_and_field_violations() {
    let suite = Suite::start().await;
    let mut client = suite.registry_client_as(ServiceName::Edge).await;
    let bad = pb::Tenant {
        id: "Bad/Id".into(),
        display_name: "X".into(),
        ..Default::default()
    };
    let status = client
        .create_tenant(pb::CreateTenantRequest { tenant: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let details = status.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("INVALID_ARGUMENT", "locksmith")
    );
    let violations = &details.bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "id");

    let status = client
        .get_tenant(pb::GetTenantRequest {
            tenant_id: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "NOT_FOUND"
    );

    let ok = pb::Tenant {
        id: "acme".into(),
        display_name: "Acme".into(),
        ..Default::default()
    };
    client
        .create_tenant(pb::CreateTenantRequest {
            tenant: Some(ok.clone()),
        })
        .await
        .unwrap();
    let stale = pb::UpdateTenantRequest {
        tenant: Some(pb::Tenant {
            version: 7,
            display_name: "Y".into(),
            ..ok
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    let status = client.update_tenant(stale).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "VERSION_CONFLICT"
    );
}

/// A channel to the registry holding the proxy's certificate (allowed to use
/// health and reflection, not to change the registry).
fn proxy_channel(suite: &Suite) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("https://{}", suite.registry_addr))
        .unwrap()
        .tls_config(load_tls(suite.pki.path(), ServiceName::Proxy).client_tls("localhost"))
        .unwrap()
        .connect_lazy()
}

/// `message` with a W3C `traceparent` of `trace_id`, so its server span can
/// be found among the spans of every test.
fn traced<T>(message: T, trace_id: TraceId) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

/// The registry's server span of trace `trace_id` (polled: spans are
/// exported as they end, which may be just after the response).
async fn server_span(trace_id: TraceId) -> SpanData {
    for _ in 0..50 {
        let found = spans()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| s.span_context.trace_id() == trace_id && s.span_kind == SpanKind::Server);
        if let Some(span) = found {
            return span;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no server span in trace {trace_id}");
}

fn attribute(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test]
async fn serves_grpc_health_and_reflection() {
    let suite = Suite::start().await;
    let mut health = HealthClient::new(proxy_channel(&suite));
    // The registry starts NOT_SERVING and says SERVING once its first storage
    // probe has answered, which the in-memory store does at once.
    for service in ["", "locksmith.registry.v1.TenantRegistryService"] {
        let mut status = None;
        for _ in 0..50 {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            status = ServingStatus::try_from(answer.status).ok();
            if status == Some(ServingStatus::Serving) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, Some(ServingStatus::Serving), "{service:?}");
    }

    // Reflection lists what the registry serves, reflection included.
    let mut reflection = ServerReflectionClient::new(proxy_channel(&suite));
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    // Exactly what the registry serves: not the other services whose
    // descriptors share the suite's descriptor set.
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "locksmith.registry.v1.ApiKeyService",
            "locksmith.registry.v1.TenantRegistryService",
        ]
    );
}

/// Server spans are named after the registry's own methods only: a path the
/// caller made up is `grpc unknown`, and its text is in no attribute.
#[tokio::test]
async fn grpc_span_names_are_only_served_methods() {
    let suite = Suite::start().await;
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let known = TraceId::from_hex("5bf92f3577b34da6a3ce929d0e0e4701").unwrap();
    HealthClient::new(proxy_channel(&suite))
        .check(traced(check(), known))
        .await
        .unwrap();
    let span = server_span(known).await;
    assert_eq!(span.name, "grpc.health.v1.Health/Check");
    assert_eq!(attribute(&span, "rpc.method"), Some("Check".into()));

    let reflected = TraceId::from_hex("5bf92f3577b34da6a3ce929d0e0e4702").unwrap();
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(proxy_channel(&suite))
        .server_reflection_info(traced(futures::stream::iter([ask]), reflected))
        .await
        .unwrap()
        .into_inner();
    while answers.message().await.unwrap().is_some() {}
    let span = server_span(reflected).await;
    assert_eq!(
        span.name,
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    );

    // Any path reaches the trace layer; the allow-list refuses it after.
    let unknown = TraceId::from_hex("5bf92f3577b34da6a3ce929d0e0e4703").unwrap();
    let mut grpc = tonic::client::Grpc::new(proxy_channel(&suite));
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<_, HealthCheckResponse, _>(
            traced(check(), unknown),
            PathAndQuery::from_static("/evil.Caller/Chosen-By-Caller"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let span = server_span(unknown).await;
    assert_eq!(span.name, "grpc unknown");
    assert_eq!(attribute(&span, "rpc.service"), None, "{span:?}");
    assert_eq!(attribute(&span, "rpc.method"), None, "{span:?}");
    assert_eq!(
        attribute(&span, "rpc.grpc.status_code"),
        Some(i64::from(tonic::Code::PermissionDenied as i32).into())
    );
}
