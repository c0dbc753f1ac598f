//! Every error leaves the edge as RFC 9457 problem+json.
//!
//! Handlers, extractors and the router fallback return [`Failure`], which
//! becomes a bare response carrying the [`ApiError`] in its extensions. The
//! [`render_problems`] middleware, which knows the request (its path and id)
//! and runs inside the request span (its trace id), writes the body. One
//! place renders every problem, so none can miss the request id.

use axum::{
    extract::{Request, rejection::JsonRejection},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use locksmith_errors::{ApiError, ErrorCode, PROBLEM_CONTENT_TYPE};

use crate::request_id::RequestId;

/// What a 503 from an unreachable backend asks callers to wait.
const BACKEND_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// An error on its way to the caller.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e)
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let mut err = ApiError::from_status(&status);
        if err.code == ErrorCode::Internal || err.code == ErrorCode::Unavailable {
            tracing::error!(code = ?status.code(), message = status.message(), "backend call failed");
        }
        if err.code == ErrorCode::Unavailable && err.retry_after.is_none() {
            // Callers should back off rather than hammer a recovering backend.
            err.retry_after = Some(BACKEND_RETRY_AFTER);
        }
        Failure(err)
    }
}

impl From<JsonRejection> for Failure {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection.status().as_u16() {
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::InvalidArgument,
        };
        let detail = match code {
            ErrorCode::PayloadTooLarge => {
                "the request body is larger than the edge accepts".to_owned()
            }
            ErrorCode::UnsupportedMediaType => {
                "the request body must be JSON (Content-Type: application/json)".to_owned()
            }
            // serde names the field and position, but quotes string values it
            // could not use (`invalid type: string "…"`): those may be secrets.
            _ => redact_quoted(&rejection.body_text()),
        };
        Failure(ApiError::new(code, detail))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = self.0.code.http_status().into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}

/// Middleware: renders the problem body of any response that carries an
/// [`ApiError`], and turns axum's own bare 404/405/413 answers into problems.
pub async fn render_problems(request: Request, next: Next) -> Response {
    let instance = request.uri().path().to_owned();
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    let mut response = next.run(request).await;
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(e) => e,
        None => match bare_error(&response) {
            Some(e) => e,
            None => return response,
        },
    };
    let problem = error.to_problem(
        Some(instance),
        request_id,
        locksmith_telemetry::current_trace_id(),
    );
    let body = match serde_json::to_vec(&problem) {
        Ok(b) => b,
        Err(_) => return error.code.http_status().into_response(),
    };
    let mut out = (error.code.http_status(), body).into_response();
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    if let Some(after) = error.retry_after
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().to_string())
    {
        out.headers_mut().insert(header::RETRY_AFTER, v);
    }
    // A 405 must keep saying which methods the route serves.
    if let Some(allow) = response.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Replaces every double-quoted string in `message` with `"…"`. Field names in
/// serde's messages are in backticks and survive.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            let mut escaped = false;
            for inner in chars.by_ref() {
                match (escaped, inner) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => escaped = false,
                }
            }
            out.push_str("…\"");
        }
    }
    out
}

/// axum and tower answer some errors themselves with an empty body.
fn bare_error(response: &Response) -> Option<ApiError> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    if response.headers().get(header::CONTENT_TYPE).is_some() {
        return None;
    }
    let (code, detail) = match status.as_u16() {
        404 => (ErrorCode::NotFound, "no such route"),
        405 => (
            ErrorCode::MethodNotAllowed,
            "this route does not serve that method",
        ),
        408 | 504 => (ErrorCode::Timeout, "the request took too long"),
        413 => (
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the edge accepts",
        ),
        _ => (ErrorCode::Internal, "internal error; see the edge log"),
    };
    Some(ApiError::new(code, detail))
}

#[cfg(test)]
mod tests {
    use super::redact_quoted;

    #[test]
    fn quoted_values_are_redacted_and_field_names_kept() {
        let serde = r#"display_name: invalid type: string "hunter2 \"x\"", expected u64 at line 1 column 9"#;
        assert_eq!(
            redact_quoted(serde),
            r#"display_name: invalid type: string "…", expected u64 at line 1 column 9"#
        );
        let unknown = "unknown field `colour`, expected one of `id`";
        assert_eq!(redact_quoted(unknown), unknown);
    }
}
