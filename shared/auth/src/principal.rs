//! The principal and what it may reach.

use std::fmt;

use locksmith_domain::TenantId;
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_tls::ServiceName;
use serde::{Deserialize, Serialize};

/// One thing a tenant principal may be allowed to do. Each role includes the
/// ones before it: `write` can read, `admin` can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the tenant's records.
    Read,
    /// Create, change and delete them.
    Write,
    /// Manage the tenant itself: its settings and API keys.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    /// Wire name (`read`, `write`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`, exactly.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Role::Read => 1,
            Role::Write => 2,
            Role::Admin => 4,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Role>", into = "Vec<Role>")]
pub struct Roles(u8);

impl Roles {
    /// The roles in `roles`.
    pub fn of(roles: impl IntoIterator<Item = Role>) -> Self {
        Roles(roles.into_iter().fold(0, |acc, r| acc | r.bit()))
    }

    /// Whether no role is held.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `role` is held.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// The highest role held.
    pub fn highest(self) -> Option<Role> {
        Role::ALL.into_iter().rev().find(|r| self.contains(*r))
    }

    /// The roles held, lowest first.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl From<Vec<Role>> for Roles {
    fn from(v: Vec<Role>) -> Self {
        Roles::of(v)
    }
}

impl From<Roles> for Vec<Role> {
    fn from(r: Roles) -> Self {
        r.iter().collect()
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What a call needs on a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read records.
    Read,
    /// Change records.
    Write,
    /// Change the tenant itself or its API keys.
    Admin,
}

impl Access {
    fn role(self) -> Role {
        match self {
            Access::Read => Role::Read,
            Access::Write => Role::Write,
            Access::Admin => Role::Admin,
        }
    }
}

/// Who a call is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Principal {
    /// Runs the deployment: every tenant, the admin routes.
    Operator {
        /// Who, for the audit trail (`api-key:<id>`); never a credential.
        subject: String,
    },
    /// Acts inside one tenant with some roles (an API key or a JWT).
    Tenant {
        /// The one tenant it may reach.
        tenant: TenantId,
        /// What it may do there.
        roles: Roles,
        /// Who, for the audit trail (`api-key:<id>`, `jwt:<issuer>#<sub>`).
        subject: String,
    },
    /// A suite service acting for itself (background work with no caller).
    Service {
        /// Which one.
        service: ServiceName,
    },
    /// A tenant's own workload holding a suite certificate: confined to its
    /// tenant like a tenant key that may read and write.
    Workload {
        /// Its tenant.
        tenant: TenantId,
        /// Its name in the certificate.
        name: String,
    },
}

/// Why a principal may not make a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The resource belongs to another tenant: answer exactly as if it did
    /// not exist, so its existence does not leak.
    Invisible,
    /// The caller sees the resource but lacks the role.
    Forbidden {
        /// What was missing, for the caller (`the write role`).
        needs: String,
    },
}

impl Denied {
    /// The error to answer; `absent` is the not-found error the call would
    /// give if the resource did not exist.
    pub fn into_api_error(self, absent: impl FnOnce() -> ApiError) -> ApiError {
        match self {
            Denied::Invisible => absent(),
            Denied::Forbidden { needs } => ApiError::new(
                ErrorCode::PermissionDenied,
                format!("this call needs {needs}"),
            ),
        }
    }
}

impl Principal {
    /// The tenant this principal is confined to; `None` for operators and
    /// suite services, which reach every tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Principal::Tenant { tenant, .. } | Principal::Workload { tenant, .. } => Some(tenant),
            Principal::Operator { .. } | Principal::Service { .. } => None,
        }
    }

    /// Whether the principal may act on `tenant` with `access`. Another
    /// tenant is [`Denied::Invisible`], whatever the access.
    pub fn authorize(&self, tenant: &TenantId, access: Access) -> Result<(), Denied> {
        match self {
            Principal::Operator { .. } | Principal::Service { .. } => Ok(()),
            Principal::Tenant { tenant: own, .. } | Principal::Workload { tenant: own, .. }
                if own != tenant =>
            {
                Err(Denied::Invisible)
            }
            Principal::Tenant { roles, .. } => {
                if roles.contains(access.role()) || roles.highest() > Some(access.role()) {
                    Ok(())
                } else {
                    Err(Denied::Forbidden {
                        needs: format!("the {} role", access.role()),
                    })
                }
            }
            Principal::Workload { .. } => match access {
                Access::Read | Access::Write => Ok(()),
                Access::Admin => Err(Denied::Forbidden {
                    needs: "an API key with the admin role".into(),
                }),
            },
        }
    }

    /// Whether the principal may use deployment-wide calls (listing every
    /// tenant, creating one): operators, and suite services acting for
    /// themselves.
    pub fn require_operator(&self) -> Result<(), Denied> {
        match self {
            Principal::Operator { .. } | Principal::Service { .. } => Ok(()),
            Principal::Tenant { .. } | Principal::Workload { .. } => Err(Denied::Forbidden {
                needs: "an operator admin key".into(),
            }),
        }
    }

    /// A short description for logs and audit records; never a credential.
    pub fn describe(&self) -> String {
        match self {
            Principal::Operator { subject } => format!("operator {subject}"),
            Principal::Tenant {
                tenant, subject, ..
            } => format!("tenant {tenant} {subject}"),
            Principal::Service { service } => format!("service {service}"),
            Principal::Workload { tenant, name } => format!("workload {tenant}/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, roles: &[Role]) -> Principal {
        Principal::Tenant {
            tenant: TenantId::parse(id).unwrap(),
            roles: Roles::of(roles.iter().copied()),
            subject: "api-key:k1".into(),
        }
    }

    #[test]
    fn a_tenant_principal_is_confined_and_ranked() {
        let acme = TenantId::parse("acme").unwrap();
        let beta = TenantId::parse("beta").unwrap();
        let reader = tenant("acme", &[Role::Read]);
        assert_eq!(reader.authorize(&acme, Access::Read), Ok(()));
        assert_eq!(
            reader.authorize(&acme, Access::Write),
            Err(Denied::Forbidden {
                needs: "the write role".into()
            })
        );
        // Another tenant is invisible even for a read, and even for an admin.
        assert_eq!(
            reader.authorize(&beta, Access::Read),
            Err(Denied::Invisible)
        );
        let admin = tenant("acme", &[Role::Admin]);
        assert_eq!(admin.authorize(&acme, Access::Write), Ok(()));
        assert_eq!(admin.authorize(&acme, Access::Read), Ok(()));
        assert_eq!(admin.authorize(&beta, Access::Read), Err(Denied::Invisible));
        let writer = tenant("acme", &[Role::Write]);
        assert!(writer.authorize(&acme, Access::Admin).is_err());
        assert!(tenant("acme", &[]).authorize(&acme, Access::Read).is_err());
        assert!(admin.require_operator().is_err());
    }

    #[test]
    fn workloads_are_confined_and_never_admins() {
        let acme = TenantId::parse("acme").unwrap();
        let w = Principal::Workload {
            tenant: acme.clone(),
            name: "billing".into(),
        };
        assert_eq!(w.authorize(&acme, Access::Write), Ok(()));
        assert!(matches!(
            w.authorize(&acme, Access::Admin),
            Err(Denied::Forbidden { .. })
        ));
        assert_eq!(
            w.authorize(&TenantId::parse("beta").unwrap(), Access::Read),
            Err(Denied::Invisible)
        );
        assert!(w.require_operator().is_err());
    }

    #[test]
    fn operators_and_services_reach_every_tenant() {
        let beta = TenantId::parse("beta").unwrap();
        for p in [
            Principal::Operator {
                subject: "api-key:root".into(),
            },
            Principal::Service {
                service: ServiceName::Broker,
            },
        ] {
            assert_eq!(p.authorize(&beta, Access::Admin), Ok(()));
            assert_eq!(p.require_operator(), Ok(()));
            assert_eq!(p.tenant(), None);
        }
    }

    #[test]
    fn invisible_answers_exactly_as_absent() {
        let absent = || ApiError::not_found("tenant 'beta' does not exist");
        assert_eq!(Denied::Invisible.into_api_error(absent), absent());
        let forbidden = Denied::Forbidden {
            needs: "the write role".into(),
        }
        .into_api_error(absent);
        assert_eq!(forbidden.code, ErrorCode::PermissionDenied);
        assert_eq!(forbidden.detail, "this call needs the write role");
    }
}
