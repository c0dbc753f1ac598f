//! Installing the process-wide subscriber, and flushing it on the way out.

use std::collections::HashMap;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::TelemetryError;

/// Instrumentation scope of every span this crate's subscriber exports; the
/// service itself is named by the provider's resource.
const TRACER_NAME: &str = "locksmith";

/// Spans below this level never become OpenTelemetry spans, whatever the log
/// filter says: hyper, h2 and tower emit debug/trace spans on every poll, and
/// exporting those would swamp the collector (and an unfiltered layer would
/// switch on every trace-level callsite in the process).
const OTEL_LEVEL: LevelFilter = LevelFilter::INFO;

/// What [`init`] reads from the environment; separate so it is testable
/// without installing a global subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    filter: String,
    json: bool,
    otlp_endpoint: Option<String>,
}

impl Settings {
    fn from_env(env: &HashMap<String, String>) -> Self {
        // An empty variable counts as unset: `FOO= cmd` is how people "unset" in shells.
        let get = |key: &str| {
            env.get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Self {
            filter: get("LOCKSMITH_LOG")
                .or_else(|| get("RUST_LOG"))
                .unwrap_or_else(|| "info".to_owned()),
            json: get("LOCKSMITH_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
            otlp_endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        }
    }
}

/// Flushes and shuts the tracer provider down on [`shutdown`](Self::shutdown)
/// or drop, so spans of the last requests reach the collector.
///
/// Shutting down blocks (up to 5 s per processor) while the batch processor
/// exports; the OTLP/gRPC client needs a free Tokio worker meanwhile, so call
/// it from a multi-thread runtime after the server has drained.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes pending spans and stops the exporter.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            // The log subscriber outlives the provider, so this still reaches stderr.
            tracing::warn!(%error, "telemetry shutdown did not complete cleanly");
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
///   and problem bodies, and W3C context propagates even when nothing is
///   exported; spans are exported over OTLP/gRPC (batch processor) only when
///   `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
/// - the global text-map propagator becomes W3C TraceContext.
///
/// `env` is injected so tests need not touch the process environment. With an
/// endpoint set this must run inside a Tokio runtime (the exporter's channel
/// spawns its worker there); the exporter's other settings
/// (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, …) are read by
/// `opentelemetry-otlp` from the process environment.
pub fn init(
    service_name: &str,
    env: &HashMap<String, String>,
) -> Result<TelemetryGuard, TelemetryError> {
    let settings = Settings::from_env(env);
    // Parse first: a typo in the filter must not leave an exporter behind.
    let filter = EnvFilter::try_new(&settings.filter)?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    install(builder.build(), filter, settings.json)
}

/// Installs the global subscriber around a caller-built provider, e.g. one
/// with an `InMemorySpanExporter` behind a simple processor (integration tests).
pub fn init_with_provider(
    provider: SdkTracerProvider,
    filter: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    install(provider, EnvFilter::try_new(filter)?, false)
}

/// The subscriber [`init`] installs (text logs), built around `provider`
/// without installing it, for `tracing::subscriber::with_default` /
/// `set_default` in unit tests, which cannot share the one global subscriber.
///
/// The propagation helpers of this crate always speak W3C, so no global
/// propagator is needed for them.
pub fn subscriber_with_provider(
    provider: &SdkTracerProvider,
    filter: &str,
) -> Result<impl tracing::Subscriber + Send + Sync + 'static, TelemetryError> {
    Ok(build_subscriber(
        provider,
        EnvFilter::try_new(filter)?,
        false,
    ))
}

fn build_subscriber(
    provider: &SdkTracerProvider,
    filter: EnvFilter,
    json: bool,
) -> impl tracing::Subscriber + Send + Sync + 'static {
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
    // The log filter applies to the fmt layer only: trace ids must exist even
    // when logging is at `warn`.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_filter(OTEL_LEVEL);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
}

fn install(
    provider: SdkTracerProvider,
    filter: EnvFilter,
    json: bool,
) -> Result<TelemetryGuard, TelemetryError> {
    build_subscriber(&provider, filter, json).try_init()?;
    // For other OpenTelemetry instrumentation in the process; ours does not need it.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_to_info_text_without_export() {
        let s = Settings::from_env(&env(&[]));
        assert_eq!(s.filter, "info");
        assert!(!s.json);
        assert_eq!(s.otlp_endpoint, None);
    }

    #[test]
    fn locksmith_log_wins_over_rust_log_and_empty_means_unset() {
        let both = env(&[("LOCKSMITH_LOG", "debug"), ("RUST_LOG", "trace")]);
        assert_eq!(Settings::from_env(&both).filter, "debug");
        let empty = env(&[("LOCKSMITH_LOG", ""), ("RUST_LOG", "warn")]);
        assert_eq!(Settings::from_env(&empty).filter, "warn");
    }

    #[test]
    fn json_format_and_endpoint() {
        let s = Settings::from_env(&env(&[
            ("LOCKSMITH_LOG_FORMAT", "JSON"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ]));
        assert!(s.json);
        assert_eq!(s.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        let blank = Settings::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert_eq!(blank.otlp_endpoint, None);
    }

    #[test]
    fn a_bad_filter_fails_before_installing_anything() {
        let result = init("t", &env(&[("LOCKSMITH_LOG", "=[")]));
        assert!(matches!(result, Err(TelemetryError::Filter(_))));
        assert!(matches!(
            subscriber_with_provider(&SdkTracerProvider::default(), "=["),
            Err(TelemetryError::Filter(_))
        ));
    }
}
