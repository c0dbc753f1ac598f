//! RFC 9457 problem details, as the edge answers every error.

use serde::{Deserialize, Serialize};

use crate::FieldViolation;

/// Media type of a problem body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem with Locksmith's extension members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:locksmith:error:<REASON>`; the reason equals the gRPC ErrorInfo reason.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Fixed summary of the type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened, for this occurrence.
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The `X-Request-Id` of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C trace id of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Bad fields, when the request was invalid.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldViolation>,
}

#[cfg(test)]
mod tests {
    use crate::{ApiError, ErrorCode};

    #[test]
    fn serialises_as_rfc9457() {
        let p = ApiError::new(ErrorCode::NotFound, "tenant 'x' does not exist").to_problem(
            Some("/tenants/x".into()),
            Some("req-1".into()),
            None,
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:locksmith:error:NOT_FOUND");
        assert_eq!(v["status"], 404);
        assert_eq!(v["title"], "Not found");
        assert_eq!(v["request_id"], "req-1");
        assert!(v.get("trace_id").is_none());
        assert!(v.get("errors").is_none());
    }
}
