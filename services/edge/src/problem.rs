//! Every error leaves the edge as RFC 9457 problem+json.
//!
//! Handlers, extractors and the router fallback return [`Failure`], which
//! becomes a bare response carrying the [`ApiError`] in its extensions. The
//! [`render_problems`] middleware, which knows the request (its path and id)
//! and runs inside the request span (its trace id), writes the body. One
//! place renders every problem, so none can miss the request id.

use axum::{
    extract::Request,
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use locksmith_errors::{ApiError, ERROR_DOMAIN, ErrorCode, FieldViolation, PROBLEM_CONTENT_TYPE};
use tonic_types::StatusExt;

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
    /// A backend's answer as the edge's caller sees it. Only statuses a
    /// Locksmith service wrote for callers (`ErrorInfo` domain `locksmith`)
    /// keep their detail, with field names translated to the HTTP API's.
    /// A backend refusing the edge itself (UNAUTHENTICATED: its certificate
    /// or the principal it forwarded; PERMISSION_DENIED: the mTLS allow-list,
    /// or a caller the edge authorized first, so the two disagree) means the
    /// edge is misconfigured, and INTERNAL or UNKNOWN means the backend
    /// failed: neither is the caller's to fix, so both are a 500 and the
    /// backend's text goes to the log only.
    fn from(status: tonic::Status) -> Self {
        Failure::from_status_naming(status, http_field)
    }
}

impl Failure {
    /// A backend's answer as [`From<tonic::Status>`] words it, with the
    /// backend's field names translated by `name` instead of the shared
    /// table: for services whose field names depend on the route (the
    /// broker's `name` is the path's integration, its `api_key.key` the
    /// body's `credentials.api_key.key`).
    pub(crate) fn from_status_naming(status: tonic::Status, name: fn(&str) -> String) -> Self {
        let from_locksmith = status
            .get_error_details()
            .error_info()
            .is_some_and(|info| info.domain == ERROR_DOMAIN);
        let mut err = ApiError::from_status(&status);
        let kept = match err.code {
            ErrorCode::Internal | ErrorCode::PermissionDenied | ErrorCode::Unauthenticated => false,
            // Transport trouble carries no ErrorInfo; from_status words it generically.
            ErrorCode::Unavailable => true,
            ErrorCode::Timeout if !from_locksmith => {
                err.detail = "a backend service took too long".to_owned();
                true
            }
            _ => from_locksmith,
        };
        if !kept {
            tracing::error!(code = ?status.code(), message = status.message(), "backend call failed");
            return Failure(ApiError::internal());
        }
        if matches!(err.code, ErrorCode::Unavailable | ErrorCode::Timeout) {
            tracing::error!(code = ?status.code(), message = status.message(), "backend call failed");
        }
        if err.code == ErrorCode::Unavailable && err.retry_after.is_none() {
            // Callers should back off rather than hammer a recovering backend.
            err.retry_after = Some(BACKEND_RETRY_AFTER);
        }
        if !err.violations.is_empty() {
            // The service's detail repeats its own field names; say it again in the caller's.
            let violations = err
                .violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: name(&v.field),
                    description: v.description,
                })
                .collect();
            err = ApiError {
                retry_after: err.retry_after,
                ..invalid(violations)
            };
        }
        Failure(err)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = self.0.code.http_status().into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}

/// Longest path segment repeated in `instance`: no id is longer.
const MAX_ECHOED_SEGMENT: usize = 64;

/// The request path as a problem's `instance`, with any segment that could
/// be a credential pasted in the wrong place (an API key, a token: longer
/// than any id) replaced, so an error never echoes a secret.
fn instance(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with("lsk_") || segment.len() > MAX_ECHOED_SEGMENT {
                "[redacted]"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Middleware: renders the problem body of any response that carries an
/// [`ApiError`], and turns axum's own bare 404/405/413 answers into problems.
pub async fn render_problems(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
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
        Some(instance(&path)),
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
    // Headers the error's producer set stay: `Allow` on a 405,
    // `WWW-Authenticate` on a 401, `RateLimit*` on a 429. The body's own
    // headers are the problem's.
    for name in [
        header::ALLOW,
        header::WWW_AUTHENTICATE,
        header::CACHE_CONTROL,
    ] {
        if let Some(value) = response.headers().get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    for name in ["ratelimit", "ratelimit-policy"] {
        if let Some(value) = response.headers().get(name) {
            out.headers_mut().insert(name, value.clone());
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

/// The field of a violation that concerns the request body as a whole.
pub(crate) const BODY: &str = "body";

/// Said of a JSON key or query parameter that appears more than once: which
/// value was meant is a guess the edge does not make.
pub(crate) const GIVEN_TWICE: &str = "is given twice";

/// `InvalidArgument` naming the bad fields, its detail a sentence per field
/// (`display_name must be a string; the body changes no field`).
pub(crate) fn invalid(violations: Vec<FieldViolation>) -> ApiError {
    let detail = violations
        .iter()
        .map(sentence)
        .collect::<Vec<_>>()
        .join("; ");
    ApiError {
        detail,
        ..ApiError::invalid(violations)
    }
}

/// `InvalidArgument` for one field.
pub(crate) fn invalid_field(field: &str, description: &str) -> ApiError {
    invalid(vec![FieldViolation {
        field: field.to_owned(),
        description: description.to_owned(),
    }])
}

/// `display_name must be a string`; descriptions that do not continue the
/// field's name as a sentence (`a bot has no email`) follow a colon.
fn sentence(v: &FieldViolation) -> String {
    const VERBS: &[&str] = &["is", "must", "may", "has", "are", "changes", "cannot"];
    let continues = v
        .description
        .split(' ')
        .next()
        .is_some_and(|word| VERBS.contains(&word));
    match (v.field.as_str(), continues) {
        (BODY, true) => format!("the body {}", v.description),
        (field, true) => format!("{field} {}", v.description),
        (field, false) => format!("{field}: {}", v.description),
    }
}

/// A caller's text (a JSON key, a query parameter's name) as it may appear in
/// a field name: escaped and shortened, so a message stays one readable line.
pub(crate) fn printable(name: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = name
        .chars()
        .take(MAX)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// The HTTP API's name for a field a backend named. The registry and the
/// credential store name the fields of their own messages
/// (`tenant.display_name`, `update_mask`, `fields.smtp-port`); the
/// caller only knows the JSON body, path and query of the edge. Names the
/// caller could not have sent become [`BODY`], and the original is logged.
pub(crate) fn http_field(field: &str) -> String {
    /// Body fields, path and query parameters that share their name with the
    /// registry's request fields.
    const SHARED: &[&str] = &[
        "id",
        "display_name",
        "domain",
        "settings",
        "status",
        "quotas",
        "quotas.requests_per_minute",
        "quotas.max_connections",
        "enabled_integrations",
        "email",
        "labels",
        "version",
        "tenant_id",
        "org_id",
        "bot_id",
        "user_id",
        "page_size",
        "page_token",
        "roles",
        "key_id",
        "name",
        "fields",
        "expected_version",
    ];
    let bare = ["tenant.", "org.", "bot.", "user.", "api_key."]
        .iter()
        .find_map(|prefix| field.strip_prefix(prefix))
        .unwrap_or(field);
    let known = SHARED.contains(&bare)
        || bare.starts_with("settings.")
        || bare.starts_with("labels.")
        || bare.starts_with("fields.")
        || bare.starts_with("roles[")
        || bare
            .strip_prefix("enabled_integrations[")
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()));
    if known {
        bare.to_owned()
    } else {
        tracing::warn!(field, "a backend named a field the HTTP API does not have");
        BODY.to_owned()
    }
}

#[cfg(test)]
mod instance_tests {
    use super::instance;

    #[test]
    fn credential_shaped_segments_are_not_echoed() {
        assert_eq!(instance("/tenants/acme/orgs"), "/tenants/acme/orgs");
        assert_eq!(
            instance("/tenants/acme/api-keys/lsk_0123456789abcdef_secret"),
            "/tenants/acme/api-keys/[redacted]"
        );
        let jwt = format!("/tenants/{}", "e".repeat(65));
        assert_eq!(instance(&jwt), "/tenants/[redacted]");
        assert_eq!(
            instance(&format!("/t/{}", "a".repeat(64))),
            format!("/t/{}", "a".repeat(64))
        );
    }
}

#[cfg(test)]
mod tests {
    use locksmith_errors::{ApiError, ErrorCode, FieldViolation};
    use tonic::{Code, Status};

    use super::*;

    fn violation(field: &str, description: &str) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }

    #[test]
    fn backend_field_names_become_http_names() {
        let status = Status::from(ApiError::invalid(vec![
            violation("update_mask", "must name at least one field to change"),
            violation("update_mask.paths[0]", "must be one of display_name"),
            violation("tenant.display_name", "is required"),
            violation("org.labels.team", "must be at most 1024 characters"),
            violation("settings.Bad Key", "keys must match [a-z0-9]"),
            violation("enabled_integrations[2]", "must not be empty"),
            violation("enabled_integrations[x]", "must not be empty"),
            violation("tenant", "is required"),
        ]));
        let Failure(err) = Failure::from(status);
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "body",
                "body",
                "display_name",
                "labels.team",
                "settings.Bad Key",
                "enabled_integrations[2]",
                "body",
                "body"
            ]
        );
        assert!(!err.detail.contains("update_mask"), "{}", err.detail);
        assert!(!err.detail.contains("tenant."), "{}", err.detail);
        assert!(
            err.detail
                .starts_with("the body must name at least one field to change; "),
            "{}",
            err.detail
        );
        assert!(
            err.detail
                .contains("; settings.Bad Key: keys must match [a-z0-9]; "),
            "{}",
            err.detail
        );
    }

    #[test]
    fn a_backend_refusing_the_edge_or_failing_is_internal() {
        for status in [
            Status::permission_denied("spiffe://locksmith/edge may not call /locksmith.X/Y"),
            Status::unauthenticated("client certificate has no Locksmith identity"),
            Status::internal("db path /var/secret"),
            Status::unknown("h2 protocol error"),
            Status::from(ApiError::new(
                ErrorCode::Unauthenticated,
                "forwarded principal: bad encoding",
            )),
            Status::from(ApiError::new(
                ErrorCode::PermissionDenied,
                "spiffe://locksmith/edge may not call /locksmith.X/Y",
            )),
            // Not written by a Locksmith service for callers.
            Status::invalid_argument("failed to decode Protobuf message"),
            Status::not_found("/locksmith.X/Y"),
            Status::new(Code::OutOfRange, "message length too large"),
        ] {
            let Failure(err) = Failure::from(status.clone());
            assert_eq!(err.code, ErrorCode::Internal, "{status:?}");
            assert_eq!(err.detail, "internal error; see the service log");
            assert!(err.violations.is_empty());
        }
    }

    #[test]
    fn locksmith_statuses_keep_their_detail_and_transport_trouble_is_generic() {
        let Failure(err) = Failure::from(Status::from(ApiError::not_found(
            "tenant 'x' does not exist",
        )));
        assert_eq!(
            (err.code, err.detail.as_str()),
            (ErrorCode::NotFound, "tenant 'x' does not exist")
        );
        let Failure(err) = Failure::from(Status::unavailable("tcp connect error 10.0.0.7"));
        assert_eq!(
            (err.code, err.detail.as_str(), err.retry_after),
            (
                ErrorCode::Unavailable,
                "a backend service is unavailable",
                Some(BACKEND_RETRY_AFTER)
            )
        );
        let Failure(err) = Failure::from(Status::deadline_exceeded("Timeout expired at 10.0.0.7"));
        assert_eq!(
            (err.code, err.detail.as_str()),
            (ErrorCode::Timeout, "a backend service took too long")
        );
    }

    #[test]
    fn names_are_escaped_and_shortened() {
        assert_eq!(printable("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        assert_eq!(printable(&long), format!("{}…", "x".repeat(64)));
    }
}
