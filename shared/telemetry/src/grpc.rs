//! tower layers that trace gRPC calls: a server span continuing the caller's
//! context, and a client span whose context travels in the request headers.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::propagation::{inject_context, set_remote_parent};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn rpc_names(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The status of a trailers-only answer (errors); `0` when the status comes
/// later in the trailers, which is the success path.
fn grpc_status<B>(response: &http::Response<B>) -> i64 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Which end of a call a span describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Continues the caller's context from the request headers.
    Server,
    /// Sends its own context in the request headers.
    Client,
}

/// Server side: `Server::builder().layer(GrpcServerTraceLayer)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcServerTraceLayer;

impl<S> Layer<S> for GrpcServerTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService {
            inner,
            side: Side::Server,
        }
    }
}

/// Client side: `ServiceBuilder::new().layer(GrpcClientTraceLayer).service(channel)`;
/// the result, a `GrpcTraceService<Channel>`, is what tonic clients take.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClientTraceLayer;

impl<S> Layer<S> for GrpcClientTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService {
            inner,
            side: Side::Client,
        }
    }
}

/// The service made by both layers.
#[derive(Clone, Debug)]
pub struct GrpcTraceService<S> {
    inner: S,
    side: Side,
}

impl<S, B, ResB> Service<http::Request<B>> for GrpcTraceService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (service, method) = rpc_names(request.uri().path());
        // Span names must be static, hence one macro call per side.
        let span: Span = match self.side {
            Side::Server => tracing::info_span!(
                "grpc.server",
                otel.name = format!("{service}/{method}"),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = Empty,
            ),
            Side::Client => tracing::info_span!(
                "grpc.client",
                otel.name = format!("{service}/{method}"),
                otel.kind = "client",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = Empty,
            ),
        };
        match self.side {
            Side::Server => set_remote_parent(&span, request.headers()),
            Side::Client => inject_context(&span.context(), request.headers_mut()),
        }
        let future = span.in_scope(|| self.inner.call(request));
        let recorder = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    recorder.record("rpc.grpc.status_code", grpc_status(response));
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tower::{ServiceExt, service_fn};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn subscriber() -> (
        impl tracing::Subscriber + Send + Sync,
        InMemorySpanExporter,
        SdkTracerProvider,
    ) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        (
            tracing_subscriber::registry().with(layer),
            exporter,
            provider,
        )
    }

    #[tokio::test]
    async fn server_span_continues_the_callers_trace() {
        let (subscriber, exporter, _provider) = subscriber();
        let _guard = tracing::subscriber::set_default(subscriber);
        let svc = GrpcServerTraceLayer.layer(service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(
                http::Response::builder()
                    .header("grpc-status", "5")
                    .body(())
                    .unwrap(),
            )
        }));
        let request = http::Request::builder()
            .uri("/locksmith.registry.v1.TenantRegistryService/GetTenant")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(())
            .unwrap();
        svc.oneshot(request).await.unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let span = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .unwrap();
        assert_eq!(
            span.name,
            "locksmith.registry.v1.TenantRegistryService/GetTenant"
        );
        assert_eq!(
            span.span_context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            span.parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(
            span.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "rpc.grpc.status_code")
        );
    }

    #[tokio::test]
    async fn client_injects_its_own_span_as_parent() {
        let (subscriber, exporter, _provider) = subscriber();
        let _guard = tracing::subscriber::set_default(subscriber);
        let svc = GrpcClientTraceLayer.layer(service_fn(|req: http::Request<()>| async move {
            let header = req.headers()["traceparent"].to_str().unwrap().to_owned();
            Ok::<_, Infallible>(http::Response::new(header))
        }));
        let outer = tracing::info_span!("outer");
        let traceparent = async {
            let request = http::Request::builder().uri("/a.B/C").body(()).unwrap();
            svc.oneshot(request).await.unwrap().into_body()
        }
        .instrument(outer.clone())
        .await;
        let outer_trace = outer.context().span().span_context().trace_id();
        drop(outer);
        let spans = exporter.get_finished_spans().unwrap();
        let client = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .unwrap();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], outer_trace.to_string());
        assert_eq!(parts[2], client.span_context.span_id().to_string());
    }

    #[tokio::test]
    async fn current_trace_id_is_32_hex() {
        let (subscriber, _exporter, _provider) = subscriber();
        let _guard = tracing::subscriber::set_default(subscriber);
        let span = tracing::info_span!("x");
        let id = span.in_scope(crate::current_trace_id).unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    use opentelemetry::trace::TraceContextExt;
}
