//! The proxy's errors, mapped exhaustively to the suite's error codes (and
//! so to gRPC statuses and HTTP problems). Any answer of the upstream API is
//! not an error: it is a response, whatever its status.
//!
//! Messages name what the caller sent (`head.path`) and the upstream host,
//! never a path, query, header value, body or credential: those are the
//! caller's or the API's data.

use std::time::Duration;

use locksmith_egress::EgressError;
use locksmith_errors::{ApiError, ErrorCode};

use crate::{headers::HeaderError, target::PathError};

/// How long a caller is told to wait when nothing better is known.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a proxied call did not reach the API, or its answer did not reach
/// the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// A bad argument, by wire path (`head.path`).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Wire path of the argument.
        field: String,
        /// What is wrong, without repeating the input.
        reason: String,
    },
    /// No such connection, or not the caller's to use: one answer for both.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller sees the connection but may not do this.
    #[error("this call needs {needs}")]
    PermissionDenied {
        /// What was missing.
        needs: String,
    },
    /// The egress policy refused the API's address: nothing was sent.
    #[error("the API at {host} is refused by the egress policy: {reason}")]
    Refused {
        /// The API's host.
        host: String,
        /// Why (a range name, `plain http …`).
        reason: String,
    },
    /// The tenant is over its rate limit.
    #[error("the tenant's rate limit is reached; retry later")]
    RateLimited {
        /// When one more call will be accepted.
        retry_after: Duration,
    },
    /// The request body exceeds what this call accepts.
    #[error("the request body exceeds {limit} bytes")]
    RequestTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The API's response exceeds what this call can carry.
    #[error("the response of {host} exceeds {limit} bytes{hint}")]
    ResponseTooLarge {
        /// The API's host.
        host: String,
        /// The limit.
        limit: u64,
        /// What to do instead (`; use StreamCall`), or empty.
        hint: &'static str,
    },
    /// The connection cannot be used until someone authorizes it again (or
    /// its integration cannot be called: a broker precondition).
    #[error("{0}")]
    Precondition(String),
    /// The API could not be reached, or answered something that is not HTTP.
    #[error("the API at {host} failed: {detail}")]
    Upstream {
        /// The API's host.
        host: String,
        /// The cause, free of URLs; logged, not answered.
        detail: String,
    },
    /// The API did not answer in time, or stalled mid-body.
    #[error("the API at {host} did not answer within {} ms", limit.as_millis())]
    UpstreamTimeout {
        /// The API's host.
        host: String,
        /// The bound that was exceeded.
        limit: Duration,
    },
    /// The whole call took longer than the proxy's total timeout.
    #[error("the call did not finish within {} ms", limit.as_millis())]
    CallTimeout {
        /// The bound.
        limit: Duration,
    },
    /// A suite service (the broker, the registry) is unavailable.
    #[error("{what} is unavailable; retry later")]
    Unavailable {
        /// Which.
        what: &'static str,
        /// When to retry.
        retry_after: Duration,
    },
    /// Our fault or a peer's; the cause is logged, never answered.
    #[error("internal: {0}")]
    Internal(String),
}

impl ProxyError {
    /// A bad argument.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The suite's code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::PermissionDenied { .. } | Self::Refused { .. } => ErrorCode::PermissionDenied,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::RequestTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::Precondition(_) => ErrorCode::FailedPrecondition,
            Self::ResponseTooLarge { .. } | Self::Upstream { .. } => ErrorCode::BadGateway,
            Self::UpstreamTimeout { .. } | Self::CallTimeout { .. } => ErrorCode::Timeout,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// A path the SSRF guard refused.
    pub fn path(e: &PathError) -> Self {
        Self::invalid("head.path", e.to_string())
    }

    /// A header refused.
    pub fn header(e: &HeaderError) -> Self {
        Self::invalid("head.headers", e.to_string())
    }

    /// An egress failure talking to the API at `host`.
    pub fn egress(e: EgressError) -> Self {
        match e {
            EgressError::Refused { host, reason } => Self::Refused {
                host,
                reason: reason.to_string(),
            },
            EgressError::Timeout { host, limit } => Self::UpstreamTimeout { host, limit },
            EgressError::TooLarge { host, limit } => Self::ResponseTooLarge {
                host,
                limit,
                hint: "",
            },
            other @ (EgressError::Unreachable { .. } | EgressError::Protocol { .. }) => {
                Self::Upstream {
                    host: other.host().to_owned(),
                    detail: other.to_string(),
                }
            }
        }
    }

    /// A status of the broker or the registry: their own errors are written
    /// for callers (and their NOT_FOUND hides other tenants alike); an
    /// outage is retryable; anything else is logged and answered as ours.
    pub fn from_peer(what: &'static str, status: &tonic::Status) -> Self {
        let api = ApiError::from_status(status);
        match api.code {
            ErrorCode::NotFound => Self::NotFound("connection"),
            ErrorCode::PermissionDenied => Self::PermissionDenied {
                needs: api
                    .detail
                    .strip_prefix("this call needs ")
                    .unwrap_or("another role")
                    .to_owned(),
            },
            ErrorCode::InvalidArgument => match api.violations.first() {
                Some(v) => Self::invalid(format!("head.{}", peer_field(&v.field)), &v.description),
                None => Self::Internal(format!("{what} refused an argument: {api}")),
            },
            ErrorCode::FailedPrecondition => Self::Precondition(api.detail),
            ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::RateLimited => {
                Self::Unavailable {
                    what,
                    retry_after: api.retry_after.unwrap_or(RETRY_AFTER),
                }
            }
            ErrorCode::AlreadyExists
            | ErrorCode::VersionConflict
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UriTooLong
            | ErrorCode::HeadersTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Unauthenticated
            | ErrorCode::BadGateway
            | ErrorCode::Internal => Self::Internal(format!("{what} answered {api}")),
        }
    }
}

/// The broker names its request's fields (`name`, `integration`); the
/// proxy's caller named the connection.
fn peer_field(field: &str) -> &str {
    match field {
        "name" | "integration" | "owner" => "connection",
        other => other,
    }
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        let code = e.code();
        match e {
            ProxyError::InvalidArgument { field, reason } => ApiError::invalid_field(field, reason),
            ProxyError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            ProxyError::RateLimited { retry_after } => {
                ApiError::new(code, "the tenant's rate limit is reached; retry later")
                    .with_retry_after(retry_after)
            }
            ProxyError::Unavailable { what, retry_after } => {
                ApiError::new(code, format!("{what} is unavailable; retry later"))
                    .with_retry_after(retry_after)
            }
            ProxyError::Upstream { host, detail } => {
                tracing::warn!(%host, %detail, "upstream API failed");
                ApiError::new(
                    code,
                    format!("the API at {host} could not be reached or answered badly"),
                )
            }
            ProxyError::Internal(cause) => {
                tracing::error!(%cause, "proxied call failed");
                ApiError::internal()
            }
            other @ (ProxyError::PermissionDenied { .. }
            | ProxyError::Refused { .. }
            | ProxyError::RequestTooLarge { .. }
            | ProxyError::ResponseTooLarge { .. }
            | ProxyError::Precondition(_)
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::CallTimeout { .. }) => ApiError::new(code, other.to_string()),
        }
    }
}

impl From<ProxyError> for tonic::Status {
    fn from(e: ProxyError) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_statuses_callers_expect() {
        let cases = [
            (
                ProxyError::path(&PathError::DotSegment),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                ProxyError::NotFound("connection"),
                404,
                tonic::Code::NotFound,
            ),
            (
                ProxyError::Refused {
                    host: "169.254.169.254".into(),
                    reason: "in link-local".into(),
                },
                403,
                tonic::Code::PermissionDenied,
            ),
            (
                ProxyError::RateLimited {
                    retry_after: Duration::from_secs(2),
                },
                429,
                tonic::Code::ResourceExhausted,
            ),
            (
                ProxyError::Upstream {
                    host: "api.example".into(),
                    detail: "connection refused".into(),
                },
                502,
                tonic::Code::Unavailable,
            ),
            (
                ProxyError::UpstreamTimeout {
                    host: "api.example".into(),
                    limit: Duration::from_secs(1),
                },
                504,
                tonic::Code::DeadlineExceeded,
            ),
        ];
        for (e, http, grpc) in cases {
            let code = e.code();
            assert_eq!(code.http_status().as_u16(), http, "{e}");
            assert_eq!(tonic::Status::from(e).code(), grpc);
        }
    }

    #[test]
    fn an_upstream_failure_names_the_host_not_the_cause() {
        let api = ApiError::from(ProxyError::Upstream {
            host: "api.example".into(),
            detail: "tls: certificate for internal.corp".into(),
        });
        assert!(api.detail.contains("api.example"));
        assert!(!api.detail.contains("internal.corp"));
    }
}
