//! The router and its cross-cutting layers, outside in: request id → trace
//! span (continuing the caller's W3C context) → problem rendering → timeout
//! → body limit → routes.

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::StatusCode,
    middleware,
    routing::get,
};
use locksmith_errors::ApiError;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};
use tracing::Span;

use crate::{
    AppState,
    config::Limits,
    problem::{Failure, render_problems},
    request_id::{self, RequestId},
    routes::{members, ops, tenants},
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

/// The edge's HTTP application.
pub fn router(state: AppState, limits: &Limits) -> Router {
    let tenant_routes = Router::new()
        .route("/tenants", axum::routing::post(tenants::create))
        .route("/admin/tenants", get(tenants::list))
        .route(
            "/tenants/{tenant_id}",
            get(tenants::get)
                .patch(tenants::patch)
                .delete(tenants::delete),
        )
        .route("/tenants/{tenant_id}/status", get(tenants::status));
    let member_routes = Router::new()
        .route(
            "/tenants/{tenant_id}/orgs",
            get(members::list_orgs).post(members::create_org),
        )
        .route(
            "/tenants/{tenant_id}/orgs/{org_id}",
            get(members::get_org)
                .patch(members::patch_org)
                .delete(members::delete_org),
        )
        .route(
            "/tenants/{tenant_id}/orgs/{org_id}/bots",
            get(members::list_bots).post(members::create_bot),
        )
        .route(
            "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}",
            get(members::get_bot)
                .patch(members::patch_bot)
                .delete(members::delete_bot),
        )
        .route(
            "/tenants/{tenant_id}/orgs/{org_id}/users",
            get(members::list_users).post(members::create_user),
        )
        .route(
            "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}",
            get(members::get_user)
                .patch(members::patch_user)
                .delete(members::delete_user),
        );
    Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/openapi.json", get(ops::openapi))
        .merge(tenant_routes)
        .merge(member_routes)
        .fallback(|| async { Failure(ApiError::not_found("no such route")) })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
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
