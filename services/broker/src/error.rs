//! The broker's one error enum and its exhaustive mapping onto the suite's
//! error model (`locksmith_errors::ApiError`, hence `tonic::Status` and the
//! edge's problem documents).
//!
//! # Public API (stable)
//!
//! ```text
//! enum BrokerError {
//!     NotFound(&'static str),                          → NOT_FOUND        "connection not found"
//!     OwnerNotFound(String)                            → NOT_FOUND        the registry's words
//!     TenantSuspended { tenant: String }               → FAILED_PRECONDITION "tenant 'x' is suspended…"
//!     InvalidArgument { field: String, reason: String } → INVALID_ARGUMENT (one violation)
//!     InvalidFields(Vec<FieldError>)                    → INVALID_ARGUMENT (every violation)
//!     AlreadyExists { what: &'static str, id: String } → ALREADY_EXISTS "integration `x` already exists…"
//!     PermissionDenied { needs: String }               → PERMISSION_DENIED "this call needs …"
//!     VersionConflict                                  → VERSION_CONFLICT (gRPC ABORTED)
//!     NeedsReauth { connection: String }               → FAILED_PRECONDITION "… needs re-authorization …"
//!     Provider { integration: String, status: u16, code: String }
//!                                                      → FAILED_PRECONDITION naming the code only
//!     Refused { host: String, reason: String }         → FAILED_PRECONDITION (egress policy)
//!     Unavailable { what: &'static str, retry_after: Duration }
//!                                                      → UNAVAILABLE + retry-after
//!     Internal(String)                                 → INTERNAL (cause logged, never sent)
//! }
//! BrokerError::code(&self) -> ErrorCode
//! BrokerError::from_credstore(tonic::Status) -> BrokerError
//! impl From<BrokerError> for ApiError / tonic::Status
//! impl From<EgressError> / From<TokenError> / From<RecordError> for BrokerError
//! ```
//!
//! No variant carries a token, a secret, a code or a provider's
//! `error_description` (free text a provider controls, which may echo what
//! it was sent): only fixed reasons, field names, hosts and error codes.

use std::time::Duration;

use locksmith_egress::{EgressError, ErrorKind};
use locksmith_errors::{ApiError, ErrorCode};

use crate::record::RecordError;

/// How long a caller is told to wait after an outage of the credential
/// store or a provider when nothing better is known.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a broker call did not happen. `Clone`: one refresh's outcome is
/// answered to every demand that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// No such thing (a connection, an integration), or not the caller's to
    /// see: one answer for both, so another tenant's connection cannot be
    /// told from an absent one.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The owner a connection would belong to is not in the registry (a
    /// tenant, org, bot or user that does not exist): the registry's own
    /// answer, which names it (`bot 'ghost' of org 'sales' in tenant 'acme'
    /// does not exist`).
    #[error("{0}")]
    OwnerNotFound(String),
    /// A tenant-scope owner whose tenant is suspended: it takes no new
    /// connections until an operator makes it active again.
    #[error("tenant '{tenant}' is suspended: it takes no new connections")]
    TenantSuspended {
        /// The tenant's id.
        tenant: String,
    },
    /// A bad argument, by wire path (`inputs.tenant`, `scopes`).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Wire path of the argument.
        field: String,
        /// What is wrong, without repeating the input.
        reason: String,
    },
    /// Several bad arguments at once (a custom provider's definition: every
    /// bad field is named, as the catalog does at load).
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<locksmith_domain::FieldError>),
    /// Creating something whose id is taken (a custom provider named like a
    /// shipped catalog entry, or one the tenant already has).
    #[error("{what} `{id}` already exists{}", if *.shipped { " in the shipped catalog" } else { "" })]
    AlreadyExists {
        /// What (`integration`).
        what: &'static str,
        /// The id taken.
        id: String,
        /// Whether the shipped catalog holds it (not a tenant's own).
        shipped: bool,
    },
    /// The caller sees the connection but may not do this.
    #[error("this call needs {needs}")]
    PermissionDenied {
        /// What was missing (`the write role`).
        needs: String,
    },
    /// Check-and-set refused a write of a connection record: it changed
    /// since it was read. Nothing was written.
    #[error("the connection changed meanwhile (check-and-set failed)")]
    VersionConflict,
    /// The provider refused the connection's grant (`invalid_grant` on a
    /// refresh): nothing works until the user authorizes again.
    #[error(
        "connection {connection} needs re-authorization: the provider refused its grant; \
         authorize it again"
    )]
    NeedsReauth {
        /// The connection's resource name.
        connection: String,
    },
    /// The provider answered with an OAuth error that is neither a dead grant
    /// nor transient (`invalid_client`, `unauthorized_client`, a non-2xx
    /// without an error code: `code` is then `http_<status>`).
    #[error("{integration} refused the request: `{code}` (HTTP {status})")]
    Provider {
        /// The integration.
        integration: String,
        /// The provider's HTTP status.
        status: u16,
        /// The provider's `error` code, never its description.
        code: String,
    },
    /// The egress policy refused the provider's endpoint (an internal
    /// address, plain http): nothing was sent.
    #[error("the provider endpoint at {host} is refused by the egress policy: {reason}")]
    Refused {
        /// The endpoint's host.
        host: String,
        /// Why (a range name, `plain http …`), never a path or query.
        reason: String,
    },
    /// The credential store or the provider cannot be reached now, or a
    /// refresh is backing off after transient failures; retry later.
    #[error("{what} is unavailable; retry later")]
    Unavailable {
        /// What (`the credential store`, `the provider`, `the connection's
        /// refresh (backing off)`).
        what: &'static str,
        /// When to retry.
        retry_after: Duration,
    },
    /// Our fault or a peer's that the caller cannot fix: a corrupt record, an
    /// unexpected answer. The cause is logged when answered, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl BrokerError {
    /// The suite's error code this answers as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) | Self::OwnerNotFound(_) => ErrorCode::NotFound,
            Self::InvalidArgument { .. } | Self::InvalidFields(_) => ErrorCode::InvalidArgument,
            Self::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Self::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Self::VersionConflict => ErrorCode::VersionConflict,
            Self::NeedsReauth { .. }
            | Self::Provider { .. }
            | Self::Refused { .. }
            | Self::TenantSuspended { .. } => ErrorCode::FailedPrecondition,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// An unavailable credential store, with the default retry delay.
    pub fn credstore_unavailable() -> Self {
        Self::Unavailable {
            what: "the credential store",
            retry_after: RETRY_AFTER,
        }
    }

    /// Reads a credential store answer. Its `NOT_FOUND` is a connection's
    /// (the only thing the broker reads there besides OAuth apps, which say
    /// so themselves); a version conflict is check-and-set; an outage is
    /// retryable; anything else is ours to log, not the caller's to see.
    pub fn from_credstore(status: &tonic::Status) -> Self {
        let api = ApiError::from_status(status);
        match api.code {
            ErrorCode::NotFound => Self::NotFound("connection"),
            ErrorCode::VersionConflict => Self::VersionConflict,
            ErrorCode::PermissionDenied => Self::PermissionDenied {
                needs: api
                    .detail
                    .strip_prefix("this call needs ")
                    .unwrap_or("another role")
                    .to_owned(),
            },
            ErrorCode::InvalidArgument => match api.violations.first() {
                Some(v) => Self::InvalidArgument {
                    field: v.field.clone(),
                    reason: v.description.clone(),
                },
                None => Self::Internal(format!("credential store refused an argument: {api}")),
            },
            ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::RateLimited => {
                Self::Unavailable {
                    what: "the credential store",
                    retry_after: api.retry_after.unwrap_or(RETRY_AFTER),
                }
            }
            ErrorCode::AlreadyExists
            | ErrorCode::FailedPrecondition
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UriTooLong
            | ErrorCode::HeadersTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Unauthenticated
            | ErrorCode::BadGateway
            | ErrorCode::Internal => Self::Internal(format!("credential store answered {api}")),
        }
    }
}

impl From<RecordError> for BrokerError {
    fn from(e: RecordError) -> Self {
        // The store sealed and authenticated the record: a field we cannot
        // read is a bug of ours (or a newer broker's format), not the caller's.
        Self::Internal(e.to_string())
    }
}

impl From<EgressError> for BrokerError {
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::Refused { host, reason } => Self::Refused {
                host,
                reason: reason.to_string(),
            },
            e => match e.kind() {
                ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Protocol => {
                    tracing::warn!(error = %e, "provider unreachable");
                    Self::Unavailable {
                        what: "the provider",
                        retry_after: RETRY_AFTER,
                    }
                }
                // A provider answering more than any token response holds is
                // misbehaving; the caller cannot fix that by retrying soon.
                ErrorKind::TooLarge | ErrorKind::Refused => {
                    Self::Internal(format!("calling the provider: {e}"))
                }
            },
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let code = e.code();
        match e {
            BrokerError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            BrokerError::OwnerNotFound(detail) => ApiError::not_found(detail),
            BrokerError::InvalidArgument { field, reason } => {
                ApiError::invalid_field(field, reason)
            }
            BrokerError::InvalidFields(errors) => ApiError::invalid(
                errors
                    .into_iter()
                    .map(|e| locksmith_errors::FieldViolation {
                        field: e.field,
                        description: e.message,
                    })
                    .collect(),
            ),
            BrokerError::Unavailable { retry_after, .. } => {
                ApiError::new(code, e.to_string()).with_retry_after(retry_after)
            }
            BrokerError::Internal(cause) => {
                tracing::error!(error = %cause, "broker failed");
                ApiError::internal()
            }
            e @ (BrokerError::PermissionDenied { .. }
            | BrokerError::AlreadyExists { .. }
            | BrokerError::VersionConflict
            | BrokerError::NeedsReauth { .. }
            | BrokerError::Provider { .. }
            | BrokerError::Refused { .. }
            | BrokerError::TenantSuspended { .. }) => ApiError::new(code, e.to_string()),
        }
    }
}

impl From<BrokerError> for tonic::Status {
    fn from(e: BrokerError) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<(BrokerError, ErrorCode)> {
        vec![
            (BrokerError::NotFound("connection"), ErrorCode::NotFound),
            (
                BrokerError::OwnerNotFound(
                    "bot 'ghost' of org 'sales' in tenant 'acme' does not exist".into(),
                ),
                ErrorCode::NotFound,
            ),
            (
                BrokerError::TenantSuspended {
                    tenant: "acme".into(),
                },
                ErrorCode::FailedPrecondition,
            ),
            (
                BrokerError::InvalidArgument {
                    field: "inputs.tenant".into(),
                    reason: "is required".into(),
                },
                ErrorCode::InvalidArgument,
            ),
            (
                BrokerError::PermissionDenied {
                    needs: "the write role".into(),
                },
                ErrorCode::PermissionDenied,
            ),
            (BrokerError::VersionConflict, ErrorCode::VersionConflict),
            (
                BrokerError::InvalidFields(vec![locksmith_domain::FieldError::new(
                    "definition.token_url",
                    "must be an https URL",
                )]),
                ErrorCode::InvalidArgument,
            ),
            (
                BrokerError::AlreadyExists {
                    what: "integration",
                    id: "github".into(),
                    shipped: true,
                },
                ErrorCode::AlreadyExists,
            ),
            (
                BrokerError::NeedsReauth {
                    connection: "tenants/acme/integrations/github".into(),
                },
                ErrorCode::FailedPrecondition,
            ),
            (
                BrokerError::Provider {
                    integration: "github".into(),
                    status: 401,
                    code: "invalid_client".into(),
                },
                ErrorCode::FailedPrecondition,
            ),
            (
                BrokerError::Refused {
                    host: "169.254.169.254".into(),
                    reason: "169.254.169.254 is in link-local".into(),
                },
                ErrorCode::FailedPrecondition,
            ),
            (
                BrokerError::Unavailable {
                    what: "the provider",
                    retry_after: Duration::from_secs(7),
                },
                ErrorCode::Unavailable,
            ),
            (
                BrokerError::Internal("record field x".into()),
                ErrorCode::Internal,
            ),
        ]
    }

    #[test]
    fn every_variant_maps_to_its_code_and_status() {
        for (err, code) in all() {
            assert_eq!(err.code(), code, "{err}");
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), code.grpc());
            assert_eq!(ApiError::from_status(&status).code, code);
        }
    }

    #[test]
    fn details_are_exact_and_internal_causes_stay_in_the_log() {
        let api = ApiError::from(BrokerError::NeedsReauth {
            connection: "tenants/acme/integrations/github".into(),
        });
        assert_eq!(
            api.detail,
            "connection tenants/acme/integrations/github needs re-authorization: the provider \
             refused its grant; authorize it again"
        );
        let api = ApiError::from(BrokerError::Provider {
            integration: "github".into(),
            status: 400,
            code: "invalid_client".into(),
        });
        assert_eq!(
            api.detail,
            "github refused the request: `invalid_client` (HTTP 400)"
        );
        assert_eq!(
            ApiError::from(BrokerError::Internal("path x".into())),
            ApiError::internal()
        );
        let api = ApiError::from(BrokerError::Unavailable {
            what: "the provider",
            retry_after: Duration::from_secs(7),
        });
        assert_eq!(api.retry_after, Some(Duration::from_secs(7)));
        let api = ApiError::from(BrokerError::InvalidArgument {
            field: "inputs.tenant".into(),
            reason: "is required".into(),
        });
        assert_eq!(api.violations[0].field, "inputs.tenant");
    }

    #[test]
    fn credential_store_answers_are_read_back() {
        let conflict = tonic::Status::from(ApiError::new(ErrorCode::VersionConflict, "stale"));
        assert!(matches!(
            BrokerError::from_credstore(&conflict),
            BrokerError::VersionConflict
        ));
        let absent = tonic::Status::from(ApiError::not_found("connection not found"));
        assert!(matches!(
            BrokerError::from_credstore(&absent),
            BrokerError::NotFound("connection")
        ));
        let down = tonic::Status::from(
            ApiError::new(ErrorCode::Unavailable, "storage")
                .with_retry_after(Duration::from_secs(3)),
        );
        match BrokerError::from_credstore(&down) {
            BrokerError::Unavailable { retry_after, what } => {
                assert_eq!(
                    (what, retry_after),
                    ("the credential store", Duration::from_secs(3))
                );
            }
            other => panic!("{other:?}"),
        }
        let transport = tonic::Status::unavailable("connection refused");
        assert_eq!(
            BrokerError::from_credstore(&transport).code(),
            ErrorCode::Unavailable
        );
        let denied = tonic::Status::from(ApiError::new(
            ErrorCode::PermissionDenied,
            "this call needs the write role",
        ));
        match BrokerError::from_credstore(&denied) {
            BrokerError::PermissionDenied { needs } => assert_eq!(needs, "the write role"),
            other => panic!("{other:?}"),
        }
        let internal = tonic::Status::internal("db path /var/x");
        assert_eq!(
            BrokerError::from_credstore(&internal).code(),
            ErrorCode::Internal
        );
    }
}
