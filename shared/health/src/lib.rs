//! `grpc.health.v1` as every Locksmith service runs it. tonic-health's
//! reporter starts the server-wide name `""` at SERVING, which would tell a
//! load balancer to route calls before storage was ever reached; here every
//! name starts NOT_SERVING and follows a storage probe from then on.

use std::{fmt::Display, future::Future, time::Duration};

use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};

/// Why a suite gRPC server (registry, credential store, broker) stopped with
/// an error: every one is built the same way (mTLS, health, reflection, the
/// trace layer), so they fail the same ways.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material was rejected by the transport.
    #[error("TLS setup failed: {0}")]
    Tls(tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The trace layer could not read the served methods.
    #[error("trace setup failed: {0}")]
    Telemetry(#[from] locksmith_telemetry::TelemetryError),
    /// The transport failed while serving.
    #[error("gRPC server failed: {0}")]
    Transport(tonic::transport::Error),
}

/// The health service and its reporter, with every name in `names`
/// NOT_SERVING until [`probe`] hears from storage.
pub async fn not_serving(names: &[&'static str]) -> (HealthReporter, HealthServer<impl Health>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in names {
        reporter
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
    (reporter, service)
}

/// Probes storage with `ping` every `every` and reports the outcome for
/// every name in `names` whenever it changes. Runs until dropped (spawn it
/// and abort it on shutdown). `what` names the storage in log lines.
pub async fn probe<F, Fut, E>(
    health: HealthReporter,
    names: &[&'static str],
    every: Duration,
    what: &'static str,
    mut ping: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut last = None;
    loop {
        let status = match ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, storage = what, "storage probe failed");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            for name in names {
                health.set_service_status(*name, status).await;
            }
            last = Some(status);
        }
        tokio::time::sleep(every).await;
    }
}
