//! Who may touch which scope, and which names fall back to wider scopes.

use locksmith_auth::{Access, Denied, Principal};
use locksmith_domain::{Scope, secrets::catalogue::Level};

use crate::CredError;

/// Whether `principal` may act on `scope` with `access`.
///
/// - A tenant's scopes: [`Principal::authorize`] — another tenant's secret
///   answers NOT_FOUND exactly as if it were absent.
/// - The system scope holds the suite's own credentials (`jwt`, `tables`…):
///   suite services and operators read it, only operators write it. Tenant
///   principals and workloads never see it, not even through resolution.
pub(crate) fn check(principal: &Principal, scope: &Scope, access: Access) -> Result<(), CredError> {
    match scope.tenant() {
        Some(tenant) => principal.authorize(tenant, access).map_err(denied),
        None => match (principal, access) {
            (Principal::Operator { .. }, _) | (Principal::Service { .. }, Access::Read) => Ok(()),
            (Principal::Service { .. }, _) => Err(CredError::PermissionDenied {
                needs: "an operator admin key".into(),
            }),
            (Principal::Tenant { .. } | Principal::Workload { .. }, _) => {
                Err(CredError::PermissionDenied {
                    needs: "a suite service or an operator admin key".into(),
                })
            }
        },
    }
}

fn denied(d: Denied) -> CredError {
    match d {
        Denied::Invisible => CredError::NotFound("secret"),
        Denied::Forbidden { needs } => CredError::PermissionDenied { needs },
    }
}

/// Whether resolving `name` from a scope of `level` may look further up:
/// the catalogue's rule (seed 000: a user's email never falls back).
pub(crate) fn falls_back(level: Level, name: &str) -> bool {
    locksmith_domain::secrets::catalogue::falls_back(level, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_email_is_pinned() {
        assert!(!falls_back(Level::User, "email"));
        assert!(falls_back(Level::Bot, "email"));
        assert!(falls_back(Level::User, "oauth/github"));
        assert!(falls_back(Level::Bot, "llm"));
    }
}
