//! One small error model for the whole suite.
//!
//! Every crate keeps its own `thiserror` enum and maps it, exhaustively, into
//! an [`ApiError`]: an [`ErrorCode`] plus a safe, human-readable detail and
//! optional field violations. An `ApiError` becomes a `tonic::Status` carrying
//! `google.rpc.ErrorInfo` (domain `locksmith`, the code's stable reason) and
//! `google.rpc.BadRequest`, so a client in any language can tell errors apart
//! without parsing text; the edge turns the same status back into an RFC 9457
//! problem whose `type` carries the same reason.
//!
//! Details must never contain secret values: they are shown to callers and
//! logged.

mod code;
mod problem;

use std::{collections::HashMap, time::Duration};

use tonic_types::{ErrorDetails, StatusExt};

pub use code::ErrorCode;
pub use problem::{PROBLEM_CONTENT_TYPE, Problem};

/// Most field violations one error carries.
pub const MAX_VIOLATIONS: usize = 20;
/// Longest detail carried in a gRPC status, in bytes: statuses travel in
/// HTTP/2 trailers, whose size peers limit.
const MAX_STATUS_DETAIL: usize = 2048;

/// The `google.rpc.ErrorInfo.domain` of every Locksmith error.
pub const ERROR_DOMAIN: &str = "locksmith";

/// One bad field of a request, by wire path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldViolation {
    /// Path of the field (`display_name`, `settings.region`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// An error as callers see it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    /// What kind of error.
    pub code: ErrorCode,
    /// Safe explanation for the caller.
    pub detail: String,
    /// Bad fields, for `InvalidArgument`.
    pub violations: Vec<FieldViolation>,
    /// When the caller may try again, for `RateLimited` and `Unavailable`.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error of `code` with `detail`.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    /// `InvalidArgument` naming the bad fields.
    /// At most [`MAX_VIOLATIONS`] are kept, so that a request with thousands
    /// of bad items gets a bounded answer (and fits gRPC's header limits).
    pub fn invalid(mut violations: Vec<FieldViolation>) -> Self {
        let more = violations.len().saturating_sub(MAX_VIOLATIONS);
        violations.truncate(MAX_VIOLATIONS);
        let mut detail = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        if more > 0 {
            detail.push_str(&format!("; and {more} more"));
        }
        Self {
            violations,
            ..Self::new(ErrorCode::InvalidArgument, detail)
        }
    }

    /// `InvalidArgument` for one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// `NotFound` with `detail`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// `Internal`; the detail is generic on purpose, the cause goes to the log
    /// where the error is handled.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the service log")
    }

    /// Sets when the caller may retry.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Reads an error back from a status, using its `ErrorInfo` reason when it
    /// comes from a Locksmith service and the plain gRPC code otherwise (a
    /// transport failure, another server).
    pub fn from_status(status: &tonic::Status) -> Self {
        let details = status.get_error_details();
        let code = details
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
            .and_then(|info| ErrorCode::from_reason(&info.reason))
            .unwrap_or_else(|| ErrorCode::from_grpc(status.code()));
        let violations = details
            .bad_request()
            .map(|br| {
                br.field_violations
                    .iter()
                    .map(|v| FieldViolation {
                        field: v.field.clone(),
                        description: v.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let retry_after = details
            .retry_info()
            .and_then(|r| r.retry_delay)
            .map(|d| d.max(Duration::from_secs(1)));
        let detail = match code {
            // A peer's internal text is not ours to show.
            ErrorCode::Internal => "internal error; see the service log".to_owned(),
            ErrorCode::Unavailable if details.error_info().is_none() => {
                "a backend service is unavailable".to_owned()
            }
            _ => status.message().to_owned(),
        };
        Self {
            code,
            detail,
            violations,
            retry_after,
        }
    }

    /// The RFC 9457 problem for this error.
    pub fn to_problem(
        &self,
        instance: Option<String>,
        request_id: Option<String>,
        trace_id: Option<String>,
    ) -> Problem {
        Problem {
            problem_type: self.code.problem_type(),
            title: self.code.title().to_owned(),
            status: self.code.http_status().as_u16(),
            detail: self.detail.clone(),
            instance,
            request_id,
            trace_id,
            errors: self.violations.clone(),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        let mut metadata = HashMap::new();
        if let Some(after) = err.retry_after {
            metadata.insert(
                "retry_after_seconds".to_owned(),
                after.as_secs().to_string(),
            );
        }
        let mut details = ErrorDetails::with_error_info(err.code.reason(), ERROR_DOMAIN, metadata);
        for v in err.violations.iter().take(MAX_VIOLATIONS) {
            details.add_bad_request_violation(v.field.clone(), v.description.clone());
        }
        if let Some(after) = err.retry_after {
            details.set_retry_info(Some(after));
        }
        let mut detail = err.detail;
        if detail.len() > MAX_STATUS_DETAIL {
            let mut end = MAX_STATUS_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
            detail.push('…');
        }
        tonic::Status::with_error_details(err.code.grpc(), detail, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_round_trip_through_status() {
        let err = ApiError::invalid_field("tenant.id", "must not be empty");
        let status = tonic::Status::from(err.clone());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(ApiError::from_status(&status), err);
    }

    #[test]
    fn version_conflict_is_aborted_on_the_wire_and_409_at_the_edge() {
        let status = tonic::Status::from(ApiError::new(ErrorCode::VersionConflict, "stale"));
        assert_eq!(status.code(), tonic::Code::Aborted);
        let back = ApiError::from_status(&status);
        assert_eq!(back.code, ErrorCode::VersionConflict);
        assert_eq!(back.code.http_status().as_u16(), 409);
    }

    #[test]
    fn plain_statuses_map_by_code_and_hide_internal_text() {
        let back = ApiError::from_status(&tonic::Status::internal("db path /var/secret"));
        assert_eq!(back.code, ErrorCode::Internal);
        assert!(!back.detail.contains("/var/secret"));
        let back = ApiError::from_status(&tonic::Status::not_found("no such tenant"));
        assert_eq!(
            (back.code, back.detail.as_str()),
            (ErrorCode::NotFound, "no such tenant")
        );
    }

    #[test]
    fn violations_are_bounded() {
        let many = (0..500)
            .map(|i| FieldViolation {
                field: format!("enabled_integrations[{i}]"),
                description: "must not be empty".into(),
            })
            .collect();
        let err = ApiError::invalid(many);
        assert_eq!(err.violations.len(), MAX_VIOLATIONS);
        assert!(err.detail.ends_with("; and 480 more"), "{}", err.detail);
        let status = tonic::Status::from(err);
        assert!(status.message().len() <= MAX_STATUS_DETAIL + '…'.len_utf8());
        assert_eq!(
            ApiError::from_status(&status).violations.len(),
            MAX_VIOLATIONS
        );
    }

    #[test]
    fn retry_after_travels() {
        let err = ApiError::new(ErrorCode::RateLimited, "slow down")
            .with_retry_after(Duration::from_secs(7));
        let back = ApiError::from_status(&tonic::Status::from(err));
        assert_eq!(back.retry_after, Some(Duration::from_secs(7)));
    }
}
