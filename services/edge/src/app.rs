//! The router and its cross-cutting layers, outside in: request id → trace
//! span (continuing the caller's W3C context) → problem rendering → timeout
//! → authentication and rate limits → body limit → routes.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{StatusCode, Uri},
    middleware,
};
use locksmith_errors::ApiError;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};
use tracing::Span;

use crate::{
    AppState, auth,
    config::Limits,
    openapi,
    problem::{Failure, render_problems},
    request_id::{self, RequestId},
};

/// Span name for requests that match no route. The raw path is never used:
/// it is caller-controlled text, and would make one span name per typo.
const UNMATCHED_ROUTE: &str = "unmatched";

fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.as_str())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http.server",
        otel.name = format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        request_id,
        http.response.status_code = tracing::field::Empty,
    );
    locksmith_telemetry::set_remote_parent(&span, request.headers());
    span
}

/// The answer to a path no route serves. A secret path that no route
/// matched is malformed (an empty segment, a `/` at the end): the caller
/// hears which part, rather than "no such route".
fn unrouted(uri: &Uri) -> Failure {
    match crate::extract::secret_path::parse(uri.path()) {
        Err(failure) => failure,
        Ok(_) => Failure(ApiError::not_found("no such route")),
    }
}

/// The edge's HTTP application.
pub fn router(state: AppState, limits: &Limits) -> Router {
    let (routes, _) = openapi::routes().split_for_parts();
    routes
        .fallback(|uri: Uri| async move { unrouted(&uri) })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.auth),
            auth::authenticate,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_millis(limits.request_timeout_ms),
        ))
        .layer(middleware::from_fn(render_problems))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(
                    |response: &axum::response::Response, latency: Duration, span: &Span| {
                        span.record("http.response.status_code", response.status().as_u16());
                        tracing::debug!(
                            status = response.status().as_u16(),
                            ?latency,
                            "request done"
                        );
                    },
                ),
        )
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}
