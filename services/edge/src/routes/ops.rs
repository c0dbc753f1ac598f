//! Operations: liveness, readiness (every backend's gRPC health), the OpenAPI document.

use std::{collections::BTreeMap, time::Duration};

use axum::{extract::State, response::IntoResponse};
use locksmith_errors::{ApiError, ErrorCode};

use crate::{AppState, dto::HealthView, extract::ApiJson, problem::Failure};

/// Liveness: the edge process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = HealthView)))]
pub async fn health() -> ApiJson<HealthView> {
    ApiJson(HealthView {
        status: "ok".into(),
        services: BTreeMap::new(),
    })
}

/// Readiness: every backend service reports SERVING over `grpc.health.v1`.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = HealthView),
              (status = 503, body = locksmith_errors::Problem, content_type = "application/problem+json", description = "A backend is not serving")))]
pub async fn ready(State(state): State<AppState>) -> Result<ApiJson<HealthView>, Failure> {
    let results = state.backends.readiness().await;
    let down: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|why| format!("{name}: {why}")))
        .collect();
    if !down.is_empty() {
        return Err(Failure(
            ApiError::new(
                ErrorCode::Unavailable,
                format!("not ready: {}", down.join(", ")),
            )
            .with_retry_after(Duration::from_secs(5)),
        ));
    }
    Ok(ApiJson(HealthView {
        status: "ready".into(),
        services: results
            .into_iter()
            .map(|(n, _)| (n.to_owned(), "serving".to_owned()))
            .collect(),
    }))
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi::document())
}
