//! The registry's errors and their one mapping onto the suite's error model.

use locksmith_domain::Invalid;
use locksmith_errors::{ApiError, ErrorCode, FieldViolation};

use locksmith_store::StoreError;

use crate::keys::KeyError;

/// Everything a registry call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is malformed; every bad field is named.
    #[error("invalid request: {0}")]
    Invalid(#[from] Invalid),
    /// No such resource (`what` is e.g. "tenant 'acme'").
    #[error("{what} does not exist")]
    NotFound {
        /// The resource.
        what: String,
    },
    /// The id is taken.
    #[error("{what} already exists")]
    AlreadyExists {
        /// The resource.
        what: String,
    },
    /// Check-and-set failed.
    #[error("{what} is at version {current}, not {given}")]
    VersionConflict {
        /// The resource.
        what: String,
        /// Its stored version.
        current: u64,
        /// The version the caller based its change on.
        given: u64,
    },
    /// A presented API key is not valid; why is for the log only, so a
    /// guesser learns nothing.
    #[error("API key refused: {log_reason}")]
    Unauthenticated {
        /// Why, for the log.
        log_reason: &'static str,
    },
    /// A valid API key of a suspended tenant.
    #[error("the key's tenant is suspended")]
    TenantSuspended,
    /// The principal may not make this call.
    #[error("permission denied: {0}")]
    Denied(ApiError),
    /// Storage failed; logged where it is turned into a status.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The credential store did not provision or shred a tenant's key, or
    /// the broker did not erase its custom providers; the tenant's create or
    /// delete did not finish (a retry does).
    #[error(transparent)]
    Keys(KeyError),
    /// A stored document no longer parses; logged, answered as internal.
    #[error("stored record for {what} is corrupt: {reason}")]
    Corrupt {
        /// The resource.
        what: String,
        /// The parser's message.
        reason: String,
    },
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::Invalid(invalid) => ApiError::invalid(
                invalid
                    .0
                    .into_iter()
                    .map(|e| FieldViolation {
                        field: e.field,
                        description: e.message,
                    })
                    .collect(),
            ),
            e @ RegistryError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
            e @ RegistryError::AlreadyExists { .. } => {
                ApiError::new(ErrorCode::AlreadyExists, e.to_string())
            }
            e @ RegistryError::VersionConflict { .. } => {
                ApiError::new(ErrorCode::VersionConflict, e.to_string())
            }
            e @ RegistryError::Unauthenticated { .. } => {
                tracing::info!(error = %e, "API key refused");
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the API key is unknown, revoked or expired",
                )
            }
            RegistryError::TenantSuspended => ApiError::new(
                ErrorCode::Unauthenticated,
                "the API key's tenant is suspended",
            ),
            RegistryError::Denied(e) => e,
            RegistryError::Storage(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "registry storage unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the registry's storage is unavailable",
                )
                .with_retry_after(locksmith_store::RETRY_AFTER)
            }
            // Not-found and conflicts are answered where they mean something
            // (a record, a version); reaching here they are bugs, like a
            // refused, corrupt or invalid store call.
            RegistryError::Storage(
                e @ (StoreError::NotFound { .. }
                | StoreError::Conflict { .. }
                | StoreError::PermissionDenied(_)
                | StoreError::Corrupt(_)
                | StoreError::Invalid(_)),
            ) => {
                tracing::error!(error = %e, "registry storage failed");
                ApiError::internal()
            }
            RegistryError::Keys(e @ KeyError::Unavailable(_)) => {
                tracing::warn!(error = %e, "tenant key call failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the credential store is unavailable; retry later",
                )
                .with_retry_after(locksmith_store::RETRY_AFTER)
            }
            RegistryError::Keys(e @ KeyError::BrokerUnavailable(_)) => {
                tracing::warn!(error = %e, "erasing a deleted tenant's custom providers failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the OAuth broker is unavailable; retry later",
                )
                .with_retry_after(locksmith_store::RETRY_AFTER)
            }
            // ALREADY_EXISTS is adopted where it can happen (provisioning);
            // reaching here it is a bug, like a refusal is a deployment fault.
            RegistryError::Keys(e @ (KeyError::Refused(_) | KeyError::AlreadyExists)) => {
                tracing::error!(error = %e, "tenant key call refused");
                ApiError::internal()
            }
            e @ RegistryError::Corrupt { .. } => {
                tracing::error!(error = %e, "corrupt registry record");
                ApiError::internal()
            }
        }
    }
}

impl From<RegistryError> for tonic::Status {
    fn from(err: RegistryError) -> Self {
        ApiError::from(err).into()
    }
}

/// One invalid field as a registry error.
pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(Invalid(vec![locksmith_domain::FieldError::new(
        field, message,
    )]))
}
