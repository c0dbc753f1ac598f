//! The error codes: small on purpose. Each has one gRPC code, one HTTP status
//! and one stable reason string, and the mapping is exhaustive.

use std::fmt;

use http::StatusCode;
use tonic::Code;

/// What went wrong, as far as a caller needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or a field is invalid.
    InvalidArgument,
    /// The resource does not exist (or is not the caller's to see).
    NotFound,
    /// A resource with that id exists already.
    AlreadyExists,
    /// Check-and-set failed: the resource changed since the version given.
    VersionConflict,
    /// The request is well formed but the system is not in a state to serve it.
    FailedPrecondition,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request target (path and query) is longer than allowed.
    UriTooLong,
    /// The request's header section is larger than allowed.
    HeadersTooLarge,
    /// The request body is not JSON.
    UnsupportedMediaType,
    /// The HTTP method is not served on this route.
    MethodNotAllowed,
    /// No or bad credentials.
    Unauthenticated,
    /// Valid credentials that do not allow this call.
    PermissionDenied,
    /// Too many requests; retry later.
    RateLimited,
    /// A dependency is down; retry later.
    Unavailable,
    /// The call ran out of time.
    Timeout,
    /// An upstream the call was forwarded to failed: unreachable, a broken
    /// or oversized response (the token proxy's calls to an API).
    BadGateway,
    /// A bug or an unexpected failure.
    Internal,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::VersionConflict,
        ErrorCode::FailedPrecondition,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::BadGateway,
        ErrorCode::Internal,
    ];

    /// Stable reason, the `google.rpc.ErrorInfo.reason` on the wire.
    pub const fn reason(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::VersionConflict => "VERSION_CONFLICT",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UriTooLong => "URI_TOO_LONG",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::BadGateway => "BAD_GATEWAY",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The code whose reason is `reason`.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.reason() == reason)
    }

    /// The gRPC status code.
    pub const fn grpc(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            // AIP-154: an etag mismatch is ABORTED.
            ErrorCode::VersionConflict => Code::Aborted,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            // Like an oversized body: a size limit, not a malformed field.
            ErrorCode::PayloadTooLarge | ErrorCode::UriTooLong | ErrorCode::HeadersTooLarge => {
                Code::ResourceExhausted
            }
            ErrorCode::UnsupportedMediaType | ErrorCode::MethodNotAllowed => Code::InvalidArgument,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Timeout => Code::DeadlineExceeded,
            ErrorCode::BadGateway => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// The best code for a status that carries no Locksmith reason.
    pub fn from_grpc(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidArgument,
            Code::NotFound => ErrorCode::NotFound,
            Code::AlreadyExists => ErrorCode::AlreadyExists,
            Code::Aborted => ErrorCode::VersionConflict,
            Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            Code::Unauthenticated => ErrorCode::Unauthenticated,
            Code::PermissionDenied => ErrorCode::PermissionDenied,
            Code::ResourceExhausted => ErrorCode::RateLimited,
            Code::Unavailable | Code::Cancelled => ErrorCode::Unavailable,
            Code::DeadlineExceeded => ErrorCode::Timeout,
            Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
                ErrorCode::Internal
            }
        }
    }

    /// The HTTP status at the edge.
    pub const fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::VersionConflict => StatusCode::CONFLICT,
            ErrorCode::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short, fixed summary (the problem's `title`).
    pub const fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "Invalid argument",
            ErrorCode::NotFound => "Not found",
            ErrorCode::AlreadyExists => "Already exists",
            ErrorCode::VersionConflict => "Version conflict",
            ErrorCode::FailedPrecondition => "Failed precondition",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::UriTooLong => "URI too long",
            ErrorCode::HeadersTooLarge => "Request header fields too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::PermissionDenied => "Permission denied",
            ErrorCode::RateLimited => "Rate limited",
            ErrorCode::Unavailable => "Service unavailable",
            ErrorCode::Timeout => "Timeout",
            ErrorCode::BadGateway => "Bad gateway",
            ErrorCode::Internal => "Internal error",
        }
    }

    /// The problem `type` URI: the same reason as on the gRPC wire.
    pub fn problem_type(self) -> String {
        format!("urn:locksmith:error:{}", self.reason())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_unique_and_round_trips() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_reason(code.reason()), Some(code));
            assert!(
                code.reason()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_')
            );
        }
    }

    #[test]
    fn size_limits_have_their_own_statuses() {
        assert_eq!(ErrorCode::PayloadTooLarge.http_status().as_u16(), 413);
        assert_eq!(ErrorCode::UriTooLong.http_status().as_u16(), 414);
        assert_eq!(ErrorCode::HeadersTooLarge.http_status().as_u16(), 431);
        assert_eq!(
            ErrorCode::HeadersTooLarge.problem_type(),
            "urn:locksmith:error:HEADERS_TOO_LARGE"
        );
    }

    #[test]
    fn server_errors_are_only_internal_unavailable_timeout_and_bad_gateway() {
        for code in ErrorCode::ALL {
            let server_side = code.http_status().is_server_error();
            let expected = matches!(
                code,
                ErrorCode::Internal
                    | ErrorCode::Unavailable
                    | ErrorCode::Timeout
                    | ErrorCode::BadGateway
            );
            assert_eq!(server_side, expected, "{code}");
        }
    }
}
