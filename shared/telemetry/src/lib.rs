//! Telemetry for every Locksmith process: `tracing` for logs and spans, an
//! OpenTelemetry layer so every span has a W3C trace id (exported over OTLP
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and trace-context
//! propagation across HTTP and gRPC hops.
//!
//! Wiring, in short:
//! - `main`: `let telemetry = init_from_env("locksmith-x")?;` … serve until
//!   [`shutdown_signal`] … `telemetry.shutdown();`
//! - gRPC server: `Server::builder().layer(GrpcServerTraceLayer::from_file_descriptor_sets(..)?)`;
//! - gRPC client: `XxxClient::new(ServiceBuilder::new().layer(GrpcClientTraceLayer).service(channel))`;
//! - HTTP server span: create it, then [`set_remote_parent`]`(&span, request.headers())`.

mod error;
mod grpc;
mod init;
mod propagation;
mod signal;

pub use error::TelemetryError;
pub use grpc::{GrpcClientTraceLayer, GrpcServerTraceLayer, GrpcTraceService, ResponseFuture};
pub use init::{TelemetryGuard, init, init_from_env, init_with_provider, subscriber_with_provider};
pub use propagation::{current_trace_id, extract_context, inject_context, set_remote_parent};
pub use signal::shutdown_signal;
