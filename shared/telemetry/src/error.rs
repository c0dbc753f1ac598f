//! The one error type of this crate: telemetry failing to start is fatal for a
//! service (it would run blind), so `main` propagates it with `?`.

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `LOCKSMITH_LOG` / `RUST_LOG` (or the filter given to a test helper) does not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built from `OTEL_EXPORTER_OTLP_*`.
    #[error("OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber (or `log` logger) was installed already; a process gets one.
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    /// A file descriptor set given to the gRPC server trace layer does not decode.
    #[error("gRPC file descriptor set: {0}")]
    Descriptor(#[from] prost::DecodeError),
}
