//! The store's one error enum and its mapping onto the suite's error model.

use std::time::Duration;

use locksmith_errors::{ApiError, ErrorCode};

/// How long a caller is told to wait after [`StoreError::Unavailable`]: long
/// enough for a busy SQLite writer to finish or an OpenBao standby to be
/// promoted (measured at 2–2.6 s with a tuned Raft; a client retries more
/// than once).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a store operation did not happen. Whatever the variant, the operation
/// changed nothing, except that [`StoreError::Unavailable`] from a remote
/// backend cannot always know whether a write landed (see there).
///
/// Messages name keys and versions but never carry document bodies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No document at that key, or not that version. `deleted` is true when
    /// the version existed and was soft-deleted or destroyed, false when the
    /// key (or that version) never existed or was removed by `delete_all`.
    /// Do not retry: the answer will not change by itself.
    #[error("not found{}", if *.deleted { " (deleted)" } else { "" })]
    NotFound {
        /// Whether the version existed and was deleted or destroyed.
        deleted: bool,
    },
    /// Check-and-set refused the write: the key is at version `current`
    /// (0 = the key does not exist), not at the version the caller based its
    /// change on, or the write was create-only and the key exists. Nothing
    /// was written. Retry only after reading the document again and
    /// re-deciding the change; re-sending the same write is never right.
    #[error("check-and-set failed: the key is at version {current}")]
    Conflict {
        /// The version the key was at when the write was refused.
        current: u64,
    },
    /// The backend could not be reached or was busy (SQLite busy or I/O
    /// failure, an OpenBao leader election, a sealed server). Retry with
    /// backoff. For a remote backend a write that timed out may still have
    /// landed: retrying it with the same check-and-set version is safe,
    /// because it then answers [`StoreError::Conflict`] instead of writing twice.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend refused us (a file we may not write, an OpenBao token
    /// without the policy). A deployment mistake: do not retry; it is logged
    /// and answered as internal.
    #[error("storage permission denied: {0}")]
    PermissionDenied(String),
    /// The backend holds or answered something that breaks the contract (a
    /// damaged file, a row of the wrong shape, an unknown schema, an answer we
    /// cannot parse). Do not retry; it is logged and answered as internal.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// The caller's argument is unacceptable (a bad key, version 0, an empty
    /// version list where one is required, a zero page size, a body over
    /// [`crate::MAX_BODY_BYTES`]). Do not retry: fix the call.
    #[error("invalid store argument: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => ApiError::not_found("no such document"),
            e @ StoreError::Conflict { .. } => {
                ApiError::new(ErrorCode::VersionConflict, e.to_string())
            }
            e @ StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "storage is unavailable; retry later",
                )
                .with_retry_after(RETRY_AFTER)
            }
            // Our deployment's fault, not the caller's: the detail stays in the log.
            e @ (StoreError::PermissionDenied(_) | StoreError::Corrupt(_)) => {
                tracing::error!(error = %e, "storage failed");
                ApiError::internal()
            }
            e @ StoreError::Invalid(_) => ApiError::new(ErrorCode::InvalidArgument, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_code() {
        let cases = [
            (
                StoreError::NotFound { deleted: false },
                ErrorCode::NotFound,
                None,
            ),
            (
                StoreError::NotFound { deleted: true },
                ErrorCode::NotFound,
                None,
            ),
            (
                StoreError::Conflict { current: 3 },
                ErrorCode::VersionConflict,
                None,
            ),
            (
                StoreError::Unavailable("busy".into()),
                ErrorCode::Unavailable,
                Some(RETRY_AFTER),
            ),
            (
                StoreError::PermissionDenied("read-only file".into()),
                ErrorCode::Internal,
                None,
            ),
            (
                StoreError::Corrupt("bad row".into()),
                ErrorCode::Internal,
                None,
            ),
            (
                StoreError::Invalid("limit is 0".into()),
                ErrorCode::InvalidArgument,
                None,
            ),
        ];
        for (err, code, retry_after) in cases {
            let retryable = err.is_retryable();
            let api = ApiError::from(err.clone());
            assert_eq!(api.code, code, "{err:?}");
            assert_eq!(api.retry_after, retry_after, "{err:?}");
            assert_eq!(retryable, code == ErrorCode::Unavailable, "{err:?}");
        }
    }

    #[test]
    fn details_show_what_a_caller_may_see_and_nothing_internal() {
        let conflict = ApiError::from(StoreError::Conflict { current: 7 });
        assert_eq!(
            conflict.detail,
            "check-and-set failed: the key is at version 7"
        );
        let corrupt = ApiError::from(StoreError::Corrupt("row 12 of /var/lib/x".into()));
        assert_eq!(corrupt, ApiError::internal());
        let denied = ApiError::from(StoreError::PermissionDenied("token abc".into()));
        assert_eq!(denied, ApiError::internal());
        let unavailable = ApiError::from(StoreError::Unavailable("disk I/O at /x".into()));
        assert_eq!(unavailable.detail, "storage is unavailable; retry later");
        assert_eq!(
            StoreError::NotFound { deleted: true }.to_string(),
            "not found (deleted)"
        );
    }
}
