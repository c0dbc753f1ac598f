//! The layers against an in-memory exporter, with `tower::service_fn` as the
//! inner service: no network, no global subscriber.

use std::convert::Infallible;

use opentelemetry::{
    Value,
    trace::{SpanId, SpanKind, Status, TraceId},
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::{TelemetryError, current_trace_id, subscriber_with_provider};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PATH: &str = "/locksmith.registry.v1.TenantRegistryService/GetTenant";
/// Well formed, but not a method of the server under test.
const PATH_NOT_SERVED: &str = "/locksmith.registry.v1.TenantRegistryService/Nope";

/// A subscriber exporting into memory, made active on this thread for as
/// long as the returned guard lives.
fn trace_to_memory() -> (
    tracing::subscriber::DefaultGuard,
    InMemorySpanExporter,
    SdkTracerProvider,
) {
    trace_to_memory_logging("off")
}

/// [`trace_to_memory`] with the fmt layer's filter set to `filter`.
fn trace_to_memory_logging(
    filter: &str,
) -> (
    tracing::subscriber::DefaultGuard,
    InMemorySpanExporter,
    SdkTracerProvider,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = subscriber_with_provider(&provider, filter).unwrap();
    (
        tracing::subscriber::set_default(subscriber),
        exporter,
        provider,
    )
}

/// The server layer of a server whose one method is [`PATH`].
fn server_layer() -> GrpcServerTraceLayer {
    GrpcServerTraceLayer::new([PATH])
}

fn only(spans: &[SpanData], kind: &SpanKind) -> SpanData {
    let found: Vec<_> = spans.iter().filter(|s| &s.span_kind == kind).collect();
    assert_eq!(found.len(), 1, "{spans:#?}");
    found[0].clone()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// A server whose handler answers trailers-only with `status`.
async fn serve_once(request: http::Request<()>, status: &'static str) {
    let svc = server_layer().layer(service_fn(move |_req: http::Request<()>| async move {
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("grpc-status", status)
                .body(())
                .unwrap(),
        )
    }));
    svc.oneshot(request).await.unwrap();
}

#[tokio::test]
async fn server_span_continues_the_callers_trace() {
    let (_guard, exporter, _provider) = trace_to_memory();
    let request = http::Request::builder()
        .uri(PATH)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .body(())
        .unwrap();
    serve_once(request, "5").await;

    let span = only(&exporter.get_finished_spans().unwrap(), &SpanKind::Server);
    assert_eq!(
        span.name,
        "locksmith.registry.v1.TenantRegistryService/GetTenant"
    );
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(CALLER_SPAN).unwrap());
    assert!(span.parent_span_is_remote);
    assert_eq!(attribute(&span, "rpc.system"), Some("grpc".into()));
    assert_eq!(
        attribute(&span, "rpc.service"),
        Some("locksmith.registry.v1.TenantRegistryService".into())
    );
    assert_eq!(attribute(&span, "rpc.method"), Some("GetTenant".into()));
    assert_eq!(attribute(&span, "rpc.grpc.status_code"), Some(5_i64.into()));
    assert_eq!(attribute(&span, "trace_id"), Some(TRACE.into()));
    // NOT_FOUND is the caller's problem, not the server's.
    assert_eq!(span.status, Status::Unset);
}

/// A TLS client without a certificate reaches the trace layer (the auth
/// layer refuses it later) and picks `:path` freely: its text must become
/// neither the span name nor an attribute.
#[tokio::test]
async fn server_span_of_an_unknown_path_has_a_fixed_name() {
    let (_guard, exporter, _provider) = trace_to_memory();
    for path in ["/evil.Caller/Chosen-By-Caller", "/x", "/", PATH_NOT_SERVED] {
        let request = http::Request::builder().uri(path).body(()).unwrap();
        serve_once(request, "16").await;
    }

    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.name, "grpc unknown");
        assert_eq!(attribute(span, "rpc.service"), None, "{span:#?}");
        assert_eq!(attribute(span, "rpc.method"), None, "{span:#?}");
        assert_eq!(attribute(span, "rpc.system"), Some("grpc".into()));
        assert_eq!(attribute(span, "rpc.grpc.status_code"), Some(16_i64.into()));
    }
}

#[tokio::test]
async fn server_without_traceparent_starts_a_trace_and_flags_its_faults() {
    let (_guard, exporter, _provider) = trace_to_memory();
    let request = http::Request::builder().uri(PATH).body(()).unwrap();
    serve_once(request, "13").await;

    let span = only(&exporter.get_finished_spans().unwrap(), &SpanKind::Server);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(span.span_context.is_valid());
    assert_eq!(
        attribute(&span, "rpc.grpc.status_code"),
        Some(13_i64.into())
    );
    assert!(matches!(span.status, Status::Error { .. }));
}

#[tokio::test]
async fn status_is_zero_when_it_comes_in_trailers() {
    let (_guard, exporter, _provider) = trace_to_memory();
    let svc = server_layer().layer(service_fn(|_req: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(()))
    }));
    let request = http::Request::builder().uri(PATH).body(()).unwrap();
    svc.oneshot(request).await.unwrap();

    let span = only(&exporter.get_finished_spans().unwrap(), &SpanKind::Server);
    assert_eq!(attribute(&span, "rpc.grpc.status_code"), Some(0_i64.into()));
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn client_injects_its_own_span_as_parent() {
    let (_guard, exporter, _provider) = trace_to_memory();
    // The "network": echoes the traceparent it received, answers UNAVAILABLE.
    let svc = ServiceBuilder::new()
        .layer(GrpcClientTraceLayer)
        .service(service_fn(|req: http::Request<()>| async move {
            let header = req.headers()["traceparent"].to_str().unwrap().to_owned();
            Ok::<_, Infallible>(
                http::Response::builder()
                    .header("grpc-status", "14")
                    .body(header)
                    .unwrap(),
            )
        }));
    let outer = tracing::info_span!("outer");
    let traceparent = async {
        let request = http::Request::builder().uri("/a.B/C").body(()).unwrap();
        svc.oneshot(request).await.unwrap().into_body()
    }
    .instrument(outer.clone())
    .await;
    let outer_cx = outer.context().span().span_context().clone();
    drop(outer);

    let spans = exporter.get_finished_spans().unwrap();
    let client = only(&spans, &SpanKind::Client);
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], outer_cx.trace_id().to_string());
    assert_eq!(parts[2], client.span_context.span_id().to_string());
    assert_eq!(client.parent_span_id, outer_cx.span_id());
    assert_eq!(client.name, "a.B/C");
    assert_eq!(
        attribute(&client, "rpc.grpc.status_code"),
        Some(14_i64.into())
    );
    assert!(matches!(client.status, Status::Error { .. }));
}

#[tokio::test]
async fn client_keeps_the_inner_error_and_marks_the_span() {
    let (_guard, exporter, _provider) = trace_to_memory();
    let svc = GrpcClientTraceLayer.layer(service_fn(|_req: http::Request<()>| async {
        Err::<http::Response<()>, _>(std::io::Error::other("refused"))
    }));
    let request = http::Request::builder().uri("/a.B/C").body(()).unwrap();
    // The error type is the inner one, unboxed.
    let error: std::io::Error = svc.oneshot(request).await.unwrap_err();
    assert_eq!(error.to_string(), "refused");
    let client = only(&exporter.get_finished_spans().unwrap(), &SpanKind::Client);
    assert!(matches!(client.status, Status::Error { .. }));
}

#[tokio::test]
async fn current_trace_id_is_32_hex() {
    // Logging at debug: the debug span below exists, but only for the fmt layer.
    let (_guard, _exporter, _provider) = trace_to_memory_logging("debug");
    let span = tracing::info_span!("x");
    let id = span.in_scope(current_trace_id).unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        id,
        span.context().span().span_context().trace_id().to_string()
    );
    // A debug span is below the OpenTelemetry layer; its parent's id still shows.
    let inner = span.in_scope(|| tracing::debug_span!("inner").in_scope(current_trace_id));
    assert_eq!(inner, Some(id));
}

/// Compile-level: a traced `Channel` is what tonic's generated clients take,
/// with tonic's own body and error types.
#[test]
fn traced_channel_is_a_grpc_service() {
    fn assert_grpc<T>()
    where
        T: tonic::client::GrpcService<
                tonic::body::Body,
                ResponseBody = tonic::body::Body,
                Error = tonic::transport::Error,
            > + Clone
            + Send
            + 'static,
        T::Future: Send,
    {
    }
    assert_grpc::<GrpcTraceService<tonic::transport::Channel>>();
}

/// Compile-level: the server layer fits `Server::builder().layer(..)`; the
/// bounds are checked where `serve` is called. The future is never polled.
#[test]
fn server_layer_fits_tonic_server() {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let serve = tonic::transport::Server::builder()
        .layer(server_layer())
        .add_routes(tonic::service::Routes::default())
        .serve(addr);
    drop(serve);
}

#[test]
fn known_methods_come_from_file_descriptor_sets() {
    let layer =
        GrpcServerTraceLayer::from_file_descriptor_sets(&[tonic_health::pb::FILE_DESCRIPTOR_SET])
            .unwrap();
    let mut known: Vec<&str> = layer.known.iter().map(String::as_str).collect();
    known.sort_unstable();
    assert_eq!(
        known,
        [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch"
        ]
    );
    let err = GrpcServerTraceLayer::from_file_descriptor_sets(&[b"\xff\xff"]).unwrap_err();
    assert!(matches!(err, TelemetryError::Descriptor(_)), "{err}");
}
