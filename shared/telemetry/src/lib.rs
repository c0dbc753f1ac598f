//! Telemetry for every Locksmith process: `tracing` for logs and spans, an
//! OpenTelemetry layer so every span has a W3C trace id (exported over OTLP
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and trace-context
//! propagation across HTTP and gRPC hops.

mod grpc;
mod init;
mod propagation;

pub use grpc::{GrpcClientTraceLayer, GrpcServerTraceLayer, GrpcTraceService};
pub use init::{
    TelemetryError, TelemetryGuard, init, init_from_env, init_with_provider, shutdown_signal,
};
pub use propagation::{current_trace_id, extract_context, inject_context, set_remote_parent};
