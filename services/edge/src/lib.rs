//! The HTTP edge: the suite's only public listener. It turns REST calls into
//! gRPC calls on the services (over mTLS, as `spiffe://locksmith/edge`) and
//! every failure into RFC 9457 problem+json.

mod app;
pub mod auth;
pub mod backends;
pub mod config;
mod contract;
pub mod dto;
mod extract;
mod head_limits;
mod listener;
pub mod openapi;
mod problem;
mod request_id;
mod routes;

use std::future::Future;

pub use app::router;
pub use backends::Backends;
pub use config::EdgeConfig;
pub use openapi::{ApiDoc, document as openapi_document};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// gRPC clients of the services. Shared: axum clones the state for
    /// every request, and cloning every tonic client (each a buffer's
    /// sender) was a tenth of the edge's CPU under load.
    pub backends: std::sync::Arc<Backends>,
    /// Who is calling; also told when a key is revoked or a tenant changes.
    pub auth: std::sync::Arc<auth::Authenticator>,
    /// `public_url` without a trailing `/`: the base of OAuth redirect URIs.
    pub public_url: Option<std::sync::Arc<str>>,
}

impl AppState {
    /// The state for `config`, refusing settings that would expose the suite.
    pub fn new(backends: Backends, config: &EdgeConfig) -> Result<Self, auth::AuthConfigError> {
        config.auth.check(config.listen)?;
        let auth = auth::Authenticator::new(config.auth.clone(), backends.clone())?;
        Ok(Self {
            backends: std::sync::Arc::new(backends),
            auth: std::sync::Arc::new(auth),
            public_url: config
                .public_url
                .as_deref()
                .map(|u| std::sync::Arc::from(u.trim_end_matches('/'))),
        })
    }
}

/// Serves the edge on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: &EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state, &config.limits);
    listener::serve(listener, app, &config.limits, shutdown).await
}
