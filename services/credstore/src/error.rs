//! The credential store's one error enum and its mapping onto the suite's
//! error model. No variant carries a field value, plaintext or key bytes:
//! only fixed reasons, field names and versions.

use locksmith_crypto::CryptoError;
use locksmith_domain::Invalid;
use locksmith_errors::{ApiError, ErrorCode, FieldViolation};
use locksmith_store::{RETRY_AFTER, StoreError};

/// Why a credential store call did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    /// No such secret, or not the caller's to see, or its tenant has no key
    /// (never provisioned, or shredded): one variant for all of them, so a
    /// caller cannot tell another tenant's secret from an absent one.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The key is provisioned already.
    #[error("{0} exists already")]
    AlreadyExists(&'static str),
    /// Check-and-set refused the write; nothing was written.
    #[error("check-and-set failed: the secret is at version {current}")]
    VersionConflict {
        /// The version the secret is at (0: it does not exist).
        current: u64,
    },
    /// The catalogue refused the fields (every bad field, by `fields.<name>`).
    #[error("invalid secret: {0}")]
    Invalid(Invalid),
    /// Another bad argument (a name, a version list), by field path.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Wire path of the argument.
        field: &'static str,
        /// What is wrong, without repeating the input.
        reason: String,
    },
    /// The caller sees the resource but may not do this.
    #[error("this call needs {needs}")]
    PermissionDenied {
        /// What was missing (`the write role`).
        needs: String,
    },
    /// The store cannot be reached; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Our fault: a corrupt document, a value that does not decrypt (moved,
    /// tampered, or sealed under a shredded key), a failing key wrapper. The
    /// cause is logged when the error is answered, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for CredError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => CredError::NotFound("secret"),
            StoreError::Conflict { current } => CredError::VersionConflict { current },
            StoreError::Unavailable(why) => CredError::Unavailable(why),
            // A bad key or version reaching the store is our bug, except for
            // version arguments, which are checked before the store is called.
            e @ (StoreError::PermissionDenied(_)
            | StoreError::Corrupt(_)
            | StoreError::Invalid(_)) => CredError::Internal(e.to_string()),
        }
    }
}

impl From<CryptoError> for CredError {
    fn from(e: CryptoError) -> Self {
        // CryptoError messages hold owners, versions and fixed reasons only.
        match e {
            // Transit unreachable or timing out is an outage like the
            // store's: retryable, UNAVAILABLE, not our bug.
            CryptoError::Unavailable { reason } => CredError::Unavailable(reason),
            e @ (CryptoError::Undecryptable
            | CryptoError::UnknownKeyVersion { .. }
            | CryptoError::Malformed { .. }
            | CryptoError::KeyUnwrap { .. }
            | CryptoError::MalformedWrappedKey { .. }
            | CryptoError::OwnerMismatch { .. }
            | CryptoError::InvalidKeyRing { .. }
            | CryptoError::MasterKeyFile { .. }
            | CryptoError::TooLong
            | CryptoError::Randomness
            | CryptoError::Backend { .. }) => CredError::Internal(e.to_string()),
        }
    }
}

impl From<CredError> for ApiError {
    fn from(e: CredError) -> Self {
        match e {
            CredError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            CredError::AlreadyExists(what) => {
                ApiError::new(ErrorCode::AlreadyExists, format!("{what} exists already"))
            }
            e @ CredError::VersionConflict { .. } => {
                ApiError::new(ErrorCode::VersionConflict, e.to_string())
            }
            CredError::Invalid(invalid) => ApiError::invalid(
                invalid
                    .0
                    .into_iter()
                    .map(|f| FieldViolation {
                        field: f.field,
                        description: f.message,
                    })
                    .collect(),
            ),
            CredError::InvalidArgument { field, reason } => ApiError::invalid_field(field, reason),
            e @ CredError::PermissionDenied { .. } => {
                ApiError::new(ErrorCode::PermissionDenied, e.to_string())
            }
            CredError::Unavailable(why) => {
                tracing::warn!(error = %why, "credential storage unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "storage is unavailable; retry later",
                )
                .with_retry_after(RETRY_AFTER)
            }
            CredError::Internal(cause) => {
                tracing::error!(error = %cause, "credential store failed");
                ApiError::internal()
            }
        }
    }
}

impl CredError {
    /// The suite's error code this answers as (for audit outcomes).
    pub fn code(&self) -> ErrorCode {
        match self {
            CredError::NotFound(_) => ErrorCode::NotFound,
            CredError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            CredError::VersionConflict { .. } => ErrorCode::VersionConflict,
            CredError::Invalid(_) | CredError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            CredError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            CredError::Unavailable(_) => ErrorCode::Unavailable,
            CredError::Internal(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locksmith_domain::FieldError;

    #[test]
    fn every_variant_maps_to_its_code_and_internal_detail_stays_in_the_log() {
        let cases = [
            (CredError::NotFound("secret"), ErrorCode::NotFound),
            (CredError::AlreadyExists("key"), ErrorCode::AlreadyExists),
            (
                CredError::VersionConflict { current: 3 },
                ErrorCode::VersionConflict,
            ),
            (
                CredError::Invalid(Invalid(vec![FieldError::new("fields.x", "bad")])),
                ErrorCode::InvalidArgument,
            ),
            (
                CredError::InvalidArgument {
                    field: "name",
                    reason: "bad".into(),
                },
                ErrorCode::InvalidArgument,
            ),
            (
                CredError::PermissionDenied {
                    needs: "the write role".into(),
                },
                ErrorCode::PermissionDenied,
            ),
            (
                CredError::Unavailable("busy".into()),
                ErrorCode::Unavailable,
            ),
            (
                CredError::Internal("tenants/acme/llm does not decrypt".into()),
                ErrorCode::Internal,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
            let api = ApiError::from(err);
            assert_eq!(api.code, code);
        }
        let internal = ApiError::from(CredError::Internal("path x".into()));
        assert_eq!(internal, ApiError::internal());
        let invalid = ApiError::from(CredError::Invalid(Invalid(vec![FieldError::new(
            "fields.smtp-port",
            "must be a port number from 1 to 65535",
        )])));
        assert_eq!(invalid.violations.len(), 1);
        assert_eq!(invalid.violations[0].field, "fields.smtp-port");
        let unavailable = ApiError::from(CredError::Unavailable("disk".into()));
        assert_eq!(unavailable.retry_after, Some(RETRY_AFTER));
    }

    #[test]
    fn an_unreachable_key_wrapper_is_unavailable_and_its_refusals_internal() {
        let down = CredError::from(CryptoError::Unavailable {
            reason: "openbao POST transit/decrypt/acme: timed out".into(),
        });
        assert_eq!(down.code(), ErrorCode::Unavailable);
        assert_eq!(ApiError::from(down).retry_after, Some(RETRY_AFTER));
        let refused = CredError::from(CryptoError::Backend {
            reason: "403 permission denied".into(),
        });
        assert_eq!(refused.code(), ErrorCode::Internal);
        let shredded = CredError::from(CryptoError::KeyUnwrap {
            owner: "tenant acme".into(),
        });
        assert_eq!(shredded.code(), ErrorCode::Internal);
    }
}
