//! The HTTP edge: the suite's only public listener. It turns REST calls into
//! gRPC calls on the services (over mTLS, as `spiffe://locksmith/edge`) and
//! every failure into RFC 9457 problem+json.

mod app;
pub mod backends;
pub mod config;
pub mod dto;
mod extract;
mod openapi;
mod problem;
mod request_id;
mod routes;

use std::future::Future;

pub use app::router;
pub use backends::Backends;
pub use config::EdgeConfig;
pub use openapi::ApiDoc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// gRPC clients of the services.
    pub backends: Backends,
}

/// Serves the edge on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backends: Backends,
    config: &EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(AppState { backends }, &config.limits);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
