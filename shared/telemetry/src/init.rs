//! Installing the process-wide subscriber, and shutting it down.

use std::collections::HashMap;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("invalid log filter: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was installed already.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes and shuts the tracer provider down when dropped or on [`shutdown`](Self::shutdown).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes pending spans and stops the exporter.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Nothing useful can be done with a failed flush at exit.
            let _ = provider.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// [`init`] with the process environment.
pub fn init_from_env(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    init(service_name, &env)
}

/// Installs the global subscriber for a service process.
///
/// - logs to stderr, filter from `LOCKSMITH_LOG`, then `RUST_LOG`, default
///   `info`; `LOCKSMITH_LOG_FORMAT=json` writes JSON lines;
/// - always an OpenTelemetry layer, so every request has a trace id for logs
///   and problem bodies and W3C context propagates even when nothing is
///   exported; spans are exported over OTLP/gRPC only when
///   `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(
    service_name: &str,
    env: &HashMap<String, String>,
) -> Result<TelemetryGuard, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = env
        .get("OTEL_EXPORTER_OTLP_ENDPOINT")
        .filter(|e| !e.is_empty())
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let filter = env
        .get("LOCKSMITH_LOG")
        .or_else(|| env.get("RUST_LOG"))
        .map_or("info", String::as_str);
    let json = env.get("LOCKSMITH_LOG_FORMAT").is_some_and(|f| f == "json");
    install(builder.build(), filter, json, service_name)
}

/// Installs the global subscriber around a caller-built provider (tests use
/// one with an in-memory exporter).
pub fn init_with_provider(
    provider: SdkTracerProvider,
    filter: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    install(provider, filter, false, "locksmith")
}

fn install(
    provider: SdkTracerProvider,
    filter: &str,
    json: bool,
    tracer_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let filter = EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let tracer = provider.tracer(tracer_name.to_owned());
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the moment to stop accepting and drain.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
