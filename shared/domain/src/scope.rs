//! Scopes: who owns a secret or a connection (design brief §1).
//!
//! `system` | `tenant/{t}` | `tenant/{t}/org/{o}` | `tenant/{t}/org/{o}/bot/{b}`
//! | `tenant/{t}/org/{o}/user/{u}`. Resolution walks from a scope up to
//! `system`: bot → org → tenant → system, user → org → tenant → system.

use std::fmt;

use crate::{IdError, MemberId, MemberKind, TenantId};

/// An owner of secrets, from the most general (`System`) to a single bot or user.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The suite-wide fallback.
    System,
    /// A tenant (deployment).
    Tenant(TenantId),
    /// A customer org inside a tenant.
    Org {
        /// The tenant.
        tenant: TenantId,
        /// The org.
        org: MemberId,
    },
    /// A bot inside an org.
    Bot {
        /// The tenant.
        tenant: TenantId,
        /// The org.
        org: MemberId,
        /// The bot.
        bot: MemberId,
    },
    /// A user inside an org.
    User {
        /// The tenant.
        tenant: TenantId,
        /// The org.
        org: MemberId,
        /// The user.
        user: MemberId,
    },
}

/// Why a string is not a scope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not one of the five shapes.
    #[error(
        "scope must be one of system, tenant/{{t}}, tenant/{{t}}/org/{{o}}, \
         tenant/{{t}}/org/{{o}}/bot/{{b}} or tenant/{{t}}/org/{{o}}/user/{{u}}"
    )]
    Malformed,
    /// The shape is right but an id inside it is not.
    #[error("{kind} id {source}")]
    BadId {
        /// Which id (`tenant`, `org`, `bot`, `user`).
        kind: &'static str,
        /// What is wrong with it.
        source: IdError,
    },
}

fn id<T>(
    kind: &'static str,
    parse: fn(&str) -> Result<T, IdError>,
    s: &str,
) -> Result<T, ScopeError> {
    parse(s).map_err(|source| ScopeError::BadId { kind, source })
}

impl Scope {
    /// Parses the canonical text form. Strict: no empty, extra or unknown
    /// segments, no trailing slash, every id checked.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let parts: Vec<&str> = s.split('/').collect();
        let scope = match parts.as_slice() {
            ["system"] => Scope::System,
            ["tenant", t] => Scope::Tenant(id("tenant", TenantId::parse, t)?),
            ["tenant", t, "org", o] => Scope::Org {
                tenant: id("tenant", TenantId::parse, t)?,
                org: id("org", MemberId::parse, o)?,
            },
            ["tenant", t, "org", o, "bot", b] => Scope::Bot {
                tenant: id("tenant", TenantId::parse, t)?,
                org: id("org", MemberId::parse, o)?,
                bot: id("bot", MemberId::parse, b)?,
            },
            ["tenant", t, "org", o, "user", u] => Scope::User {
                tenant: id("tenant", TenantId::parse, t)?,
                org: id("org", MemberId::parse, o)?,
                user: id("user", MemberId::parse, u)?,
            },
            _ => return Err(ScopeError::Malformed),
        };
        Ok(scope)
    }

    /// The scope of an org, bot or user given its kind.
    pub fn member(tenant: TenantId, org: MemberId, kind: MemberKind, id: MemberId) -> Self {
        match kind {
            MemberKind::Org => Scope::Org { tenant, org: id },
            MemberKind::Bot => Scope::Bot {
                tenant,
                org,
                bot: id,
            },
            MemberKind::User => Scope::User {
                tenant,
                org,
                user: id,
            },
        }
    }

    /// The tenant that owns this scope; `None` for `system`.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Scope::System => None,
            Scope::Tenant(t)
            | Scope::Org { tenant: t, .. }
            | Scope::Bot { tenant: t, .. }
            | Scope::User { tenant: t, .. } => Some(t),
        }
    }

    /// Which kind of member this scope names, if it names one.
    pub fn member_kind(&self) -> Option<MemberKind> {
        match self {
            Scope::System | Scope::Tenant(_) => None,
            Scope::Org { .. } => Some(MemberKind::Org),
            Scope::Bot { .. } => Some(MemberKind::Bot),
            Scope::User { .. } => Some(MemberKind::User),
        }
    }

    /// The id of the last segment (`system` for the system scope).
    pub fn leaf_id(&self) -> &str {
        match self {
            Scope::System => "system",
            Scope::Tenant(t) => t.as_str(),
            Scope::Org { org, .. } => org.as_str(),
            Scope::Bot { bot, .. } => bot.as_str(),
            Scope::User { user, .. } => user.as_str(),
        }
    }

    /// The next scope up; `None` above `system`.
    pub fn parent(&self) -> Option<Scope> {
        match self {
            Scope::System => None,
            Scope::Tenant(_) => Some(Scope::System),
            Scope::Org { tenant, .. } => Some(Scope::Tenant(tenant.clone())),
            Scope::Bot { tenant, org, .. } | Scope::User { tenant, org, .. } => Some(Scope::Org {
                tenant: tenant.clone(),
                org: org.clone(),
            }),
        }
    }

    /// This scope and every scope above it, most specific first: the order in
    /// which a secret is resolved.
    pub fn ancestry(&self) -> impl Iterator<Item = Scope> {
        std::iter::successors(Some(self.clone()), Scope::parent)
    }

    /// Storage path after seed 000's layout, orgs nested under their tenant so
    /// one prefix covers a whole tenant: `system`, `tenants/{t}`,
    /// `tenants/{t}/orgs/{o}`, `…/bots/{b}`, `…/users/{u}`.
    pub fn storage_path(&self) -> String {
        match self {
            Scope::System => "system".to_owned(),
            Scope::Tenant(t) => format!("tenants/{t}"),
            Scope::Org { tenant, org } => format!("tenants/{tenant}/orgs/{org}"),
            Scope::Bot { tenant, org, bot } => format!("tenants/{tenant}/orgs/{org}/bots/{bot}"),
            Scope::User { tenant, org, user } => {
                format!("tenants/{tenant}/orgs/{org}/users/{user}")
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::System => f.write_str("system"),
            Scope::Tenant(t) => write!(f, "tenant/{t}"),
            Scope::Org { tenant, org } => write!(f, "tenant/{tenant}/org/{org}"),
            Scope::Bot { tenant, org, bot } => write!(f, "tenant/{tenant}/org/{org}/bot/{bot}"),
            Scope::User { tenant, org, user } => write!(f, "tenant/{tenant}/org/{org}/user/{user}"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        Scope::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_shape() {
        for s in [
            "system",
            "tenant/prod",
            "tenant/prod/org/acme",
            "tenant/prod/org/acme/bot/helper",
            "tenant/prod/org/acme/user/550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn refuses_malformed_scopes() {
        for s in [
            "",
            "System",
            "system/",
            "tenant",
            "tenant/prod/",
            "/tenant/prod",
            "tenant/prod/bot/x",
            "tenant/prod/org/acme/robot/x",
            "tenant/prod/org/acme/bot/x/extra",
            "tenants/prod",
        ] {
            assert_eq!(Scope::parse(s), Err(ScopeError::Malformed), "{s:?}");
        }
        for s in [
            "tenant/",
            "tenant/..",
            "tenant/Prod",
            "tenant/prod/org/a%2Fb",
            "tenant/prod/org/a\0",
        ] {
            assert!(
                matches!(Scope::parse(s), Err(ScopeError::BadId { .. })),
                "{s:?}"
            );
        }
    }

    #[test]
    fn resolution_order_walks_up_to_system() {
        let bot = Scope::parse("tenant/prod/org/acme/bot/b1").unwrap();
        let chain: Vec<String> = bot.ancestry().map(|s| s.to_string()).collect();
        assert_eq!(
            chain,
            [
                "tenant/prod/org/acme/bot/b1",
                "tenant/prod/org/acme",
                "tenant/prod",
                "system"
            ]
        );
        let user = Scope::parse("tenant/prod/org/acme/user/u1").unwrap();
        assert_eq!(user.ancestry().count(), 4);
    }

    /// Arbitrary input never panics, and whatever parses re-renders to the
    /// same text and yields a storage path without dot segments or escapes.
    #[test]
    fn arbitrary_input_parses_safely() {
        const PIECES: &[&str] = &[
            "system", "tenant", "org", "bot", "user", "/", "a", "prod", "..", ".", "%2F", "\\",
            "\0", "é", "-", "A", "",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            // xorshift: deterministic, dependency-free pseudo-randomness.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for i in 0..(state % 12) {
                let index = ((state >> (i * 5)) % PIECES.len() as u64) as usize;
                text.push_str(PIECES[index]);
            }
            if let Ok(scope) = Scope::parse(&text) {
                parsed += 1;
                assert_eq!(scope.to_string(), text);
                let path = scope.storage_path();
                assert!(
                    path.split('/')
                        .all(|seg| !seg.is_empty() && seg != ".." && seg != "."),
                    "{path}"
                );
                assert!(path.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'/'));
            }
        }
        assert!(
            parsed > 20,
            "the generator must also produce valid scopes ({parsed})"
        );
    }

    #[test]
    fn storage_paths_nest_under_the_tenant() {
        let s = Scope::parse("tenant/prod/org/acme/user/u1").unwrap();
        assert_eq!(s.storage_path(), "tenants/prod/orgs/acme/users/u1");
        assert_eq!(Scope::System.storage_path(), "system");
    }
}
