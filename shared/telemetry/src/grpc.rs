//! tower layers that trace gRPC calls: a server span continuing the caller's
//! context, and a client span whose context travels in the request headers.
//!
//! They sit at the tower level (`http::Request<B>` in, `http::Response<ResB>`
//! out) rather than as tonic interceptors because interceptors see neither the
//! response nor the future, so they could not record the status or keep the
//! span entered while the handler runs.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use opentelemetry::trace::TraceContextExt;
use pin_project_lite::pin_project;
use prost::Message;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    TelemetryError,
    propagation::{inject_context, set_remote_parent},
};

/// The span name of a call to a path the server does not serve.
const UNKNOWN_METHOD: &str = "grpc unknown";

/// Server side: `Server::builder().layer(GrpcServerTraceLayer::from_file_descriptor_sets(..)?)`.
/// Each call gets a `grpc.server` span, child of the W3C context in the
/// request headers.
///
/// `:path` is chosen by the caller, and the trace layer runs before anyone
/// is authenticated (a TLS client without a certificate reaches it), so the
/// path names a span only when it is one of the server's own methods; any
/// other call is `grpc unknown` without `rpc.service` / `rpc.method`. That
/// keeps span names bounded and caller text out of exported traces.
#[derive(Clone, Debug)]
pub struct GrpcServerTraceLayer {
    known: Arc<HashSet<String>>,
}

impl GrpcServerTraceLayer {
    /// Names spans after `methods` (full paths, `/pkg.Service/Method`) only.
    pub fn new<I>(methods: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            known: Arc::new(methods.into_iter().map(Into::into).collect()),
        }
    }

    /// Names spans after every method of every service in `encoded_sets`
    /// (encoded `google.protobuf.FileDescriptorSet`s, the same the reflection
    /// service is built from), so a new RPC in the protos needs no list here.
    pub fn from_file_descriptor_sets(encoded_sets: &[&[u8]]) -> Result<Self, TelemetryError> {
        let mut methods = Vec::new();
        for encoded in encoded_sets {
            let set = prost_types::FileDescriptorSet::decode(*encoded)?;
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    let service_name = match package {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    methods.extend(
                        service
                            .method
                            .iter()
                            .map(|method| format!("/{service_name}/{}", method.name())),
                    );
                }
            }
        }
        Ok(Self::new(methods))
    }
}

impl<S> Layer<S> for GrpcServerTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService {
            inner,
            side: Side::Server,
            known: Some(Arc::clone(&self.known)),
        }
    }
}

/// Client side: `ServiceBuilder::new().layer(GrpcClientTraceLayer).service(channel)`,
/// then `XxxClient::new(svc)`. Each call gets a `grpc.client` span, child of
/// the current span, whose context is sent as `traceparent`.
///
/// Client spans are named after the path as is: the caller is our own code,
/// and tonic's generated clients only send the fixed paths of their methods.
///
/// The wrapped channel is a `GrpcTraceService<tonic::transport::Channel>`;
/// it is `Clone` and implements `tonic::client::GrpcService<tonic::body::Body>`
/// with `Error = tonic::transport::Error` and `ResponseBody = tonic::body::Body`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClientTraceLayer;

impl<S> Layer<S> for GrpcClientTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService {
            inner,
            side: Side::Client,
            known: None,
        }
    }
}

/// Which end of a call a span describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Continues the caller's context from the request headers.
    Server,
    /// Sends its own context in the request headers.
    Client,
}

impl Side {
    /// Whether `code` marks the span as failed, per the OpenTelemetry gRPC
    /// conventions: a server only fails on its own faults (a caller's
    /// NOT_FOUND is a correct answer), a client on any non-OK status.
    fn is_error(self, code: i64) -> bool {
        match self {
            Self::Client => code != 0,
            // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
            Self::Server => matches!(code, 2 | 4 | 12..=15),
        }
    }
}

/// The service made by both layers; the inner service's response and error
/// types pass through unchanged.
#[derive(Clone, Debug)]
pub struct GrpcTraceService<S> {
    inner: S,
    side: Side,
    /// The paths a server span may be named after; `None` on the client,
    /// whose paths come from its own generated code.
    known: Option<Arc<HashSet<String>>>,
}

impl<S, B, ResB> Service<http::Request<B>> for GrpcTraceService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = match &self.known {
            Some(known) if !known.contains(path) => None,
            _ => Some(rpc_names(path)),
        };
        let span = new_span(self.side, method);
        match self.side {
            Side::Server => {
                set_remote_parent(&span, request.headers());
                // A field, so every log line inside the call carries the trace id.
                let sc = span.context().span().span_context().clone();
                if sc.is_valid() {
                    span.record("trace_id", sc.trace_id().to_string());
                }
            }
            Side::Client => inject_context(&span.context(), request.headers_mut()),
        }
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture {
            inner: inner.instrument(span),
            side: self.side,
        }
    }
}

pin_project! {
    /// Future of [`GrpcTraceService`]: polls the inner future inside the span
    /// and records the gRPC status once the response head arrives. Named
    /// rather than boxed, so the layer adds no allocation and no `Send` bound.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        side: Side,
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll(cx));
        let span = this.inner.span();
        match &result {
            Ok(response) => {
                let code = grpc_status(response);
                span.record("rpc.grpc.status_code", code);
                if this.side.is_error(code) {
                    span.record("otel.status_code", "ERROR");
                }
            }
            // Transport failure: no gRPC status at all.
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        Poll::Ready(result)
    }
}

/// One span per call; span names must be static, hence a macro call per
/// side. `method` is `(service, method)`, or `None` for a path the server
/// does not serve: that span gets a fixed name and no name fields.
fn new_span(side: Side, method: Option<(&str, &str)>) -> Span {
    let name = method.map_or_else(
        || UNKNOWN_METHOD.to_owned(),
        |(service, method)| format!("{service}/{method}"),
    );
    let span = match side {
        Side::Server => tracing::info_span!(
            "grpc.server",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = Empty,
            rpc.method = Empty,
            rpc.grpc.status_code = Empty,
            trace_id = Empty,
        ),
        Side::Client => tracing::info_span!(
            "grpc.client",
            otel.name = name,
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = Empty,
            rpc.method = Empty,
            rpc.grpc.status_code = Empty,
        ),
    };
    if let Some((service, method)) = method {
        span.record("rpc.service", service);
        span.record("rpc.method", method);
    }
    span
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn rpc_names(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The status of a trailers-only response (how tonic answers a unary error);
/// `0` when absent, since then the status follows in the trailers, which is
/// the success path. An unparsable header counts as UNKNOWN (2).
fn grpc_status<B>(response: &http::Response<B>) -> i64 {
    response.headers().get("grpc-status").map_or(0, |v| {
        v.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(2)
    })
}

#[cfg(test)]
mod tests;
