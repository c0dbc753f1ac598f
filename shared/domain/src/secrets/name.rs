//! Secret names and the resource names that address them.
//!
//! A secret lives at `(scope, name)`. Names follow seed 000
//! (`infrastructure/tables`, `email`, `api-keys/openai`): lowercase segments
//! joined by `/`. Seed 000's layout stores a scope's secrets directly under
//! its path, beside its children (`orgs/`, `bots/`, `users/`) and records
//! (`config`, `api-keys/…` of the registry, `integrations/…` of the broker),
//! so a name must never start with one of those: `orgs/o/bots/b/llm` at
//! tenant scope would be a bot's secret, `config` the tenant's record.
//!
//! Resource names (`tenants/{t}/orgs/{o}/bots/{b}/secrets/{name}`,
//! `system/secrets/{name}`) address a secret in the API; [`SecretName::storage_path`]
//! is where it is kept.

use std::fmt;

use crate::{MemberId, MemberKind, Scope, TenantId};

/// Most segments in a name.
pub const MAX_SEGMENTS: usize = 8;
/// Longest name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
const MAX_SEGMENT_BYTES: usize = 63;

/// Why a string is not a secret name. The value itself is never repeated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or an empty segment (`a//b`, a `/` at either end).
    #[error("must be non-empty segments separated by single '/'")]
    EmptySegment,
    /// A segment outside `[a-z0-9][a-z0-9._-]{0,62}` (this also refuses `.`,
    /// `..`, `%2F`, NUL, control and non-ASCII characters).
    #[error("each segment must match [a-z0-9][a-z0-9._-]{{0,62}}")]
    BadSegment,
    /// Too many segments or bytes.
    #[error("must be at most {MAX_NAME_BYTES} bytes in at most {MAX_SEGMENTS} segments")]
    TooLong,
    /// The name would land in another record's or scope's storage path.
    #[error("must not start with '{0}': that path belongs to {1}")]
    Reserved(&'static str, &'static str),
}

/// A well-formed secret name, valid at the scope it was parsed for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

/// First segments that belong to something else at each scope level:
/// (segment, what owns it).
fn reserved(scope: &Scope) -> &'static [(&'static str, &'static str)] {
    match scope {
        Scope::System => &[
            ("api-keys", "the operator API keys"),
            ("integrations", "system connections"),
            ("secrets", "the resource-name form"),
        ],
        Scope::Tenant(_) => &[
            ("orgs", "the tenant's orgs"),
            ("config", "the tenant's registry record"),
            ("api-keys", "the tenant's API keys"),
            ("integrations", "the tenant's connections"),
            ("secrets", "the resource-name form"),
        ],
        Scope::Org { .. } => &[
            ("bots", "the org's bots"),
            ("users", "the org's users"),
            ("config", "the org's registry record"),
            ("integrations", "the org's connections"),
            ("secrets", "the resource-name form"),
        ],
        Scope::Bot { .. } | Scope::User { .. } => &[
            ("config", "the member's registry record"),
            ("integrations", "the member's connections"),
            ("secrets", "the resource-name form"),
        ],
    }
}

fn is_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SEGMENT_BYTES
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

impl SecretName {
    /// Parses `raw` as the name of a secret of `scope`.
    pub fn parse(raw: &str, scope: &Scope) -> Result<Self, NameError> {
        if raw.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong);
        }
        let segments: Vec<&str> = raw.split('/').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(NameError::TooLong);
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(NameError::EmptySegment);
        }
        if !segments.iter().all(|s| is_segment(s)) {
            return Err(NameError::BadSegment);
        }
        if let Some((segment, owner)) = reserved(scope)
            .iter()
            .find(|(segment, _)| segments.first() == Some(segment))
        {
            return Err(NameError::Reserved(segment, owner));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the secret of `scope` with this name is stored (seed 000's
    /// layout): `tenants/{t}/orgs/{o}/bots/{b}/{name}`, `system/{name}`.
    pub fn storage_path(&self, scope: &Scope) -> String {
        format!("{}/{}", scope.storage_path(), self.0)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret's address: `(scope, name)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// Who owns it.
    pub scope: Scope,
    /// Its name at that scope.
    pub name: SecretName,
}

/// Why a resource name does not address a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// Not `system/secrets/{name}` or `tenants/{t}[/orgs/{o}[/bots|users/{id}]]/secrets/{name}`.
    #[error(
        "must be system/secrets/{{name}} or tenants/{{t}}[/orgs/{{o}}[/bots/{{b}}|/users/{{u}}]]/secrets/{{name}}"
    )]
    Malformed,
    /// An id inside it is not an id.
    #[error("{0} id is not valid")]
    BadId(&'static str),
    /// The name part is not a name.
    #[error("secret name {0}")]
    BadName(NameError),
}

impl SecretRef {
    /// Parses a resource name.
    pub fn parse(resource: &str) -> Result<Self, ResourceError> {
        // The first `/secrets/` whose left side is an owner: an org or a
        // member may itself be called `secrets` (`tenants/t/orgs/secrets/…`),
        // and a name may hold the segment further on.
        let mut first_error = ResourceError::Malformed;
        // Overlapping matches: `orgs/secrets/secrets/x` holds two.
        let separators =
            (0..resource.len()).filter(|&i| resource.as_bytes()[i..].starts_with(b"/secrets/"));
        for at in separators {
            let (owner, name) = (&resource[..at], &resource[at + "/secrets/".len()..]);
            match scope_of_owner(owner) {
                Ok(scope) => {
                    let name = SecretName::parse(name, &scope).map_err(ResourceError::BadName)?;
                    return Ok(Self { scope, name });
                }
                Err(e) if matches!(first_error, ResourceError::Malformed) => first_error = e,
                Err(_) => {}
            }
        }
        Err(first_error)
    }

    /// The resource name, the inverse of [`SecretRef::parse`].
    pub fn resource_name(&self) -> String {
        format!("{}/secrets/{}", self.scope.storage_path(), self.name)
    }

    /// Where the secret is stored.
    pub fn storage_path(&self) -> String {
        self.name.storage_path(&self.scope)
    }
}

/// The scope a resource name's owner part (`tenants/t/orgs/o`) names; the
/// owner part has the scope's storage-path form.
pub(crate) fn scope_of_owner(owner: &str) -> Result<Scope, ResourceError> {
    let parts: Vec<&str> = owner.split('/').collect();
    let tenant = |raw: &str| TenantId::parse(raw).map_err(|_| ResourceError::BadId("tenant"));
    let member = |raw: &str, kind: &'static str| {
        MemberId::parse(raw).map_err(|_| ResourceError::BadId(kind))
    };
    match parts.as_slice() {
        ["system"] => Ok(Scope::System),
        ["tenants", t] => Ok(Scope::Tenant(tenant(t)?)),
        ["tenants", t, "orgs", o] => Ok(Scope::Org {
            tenant: tenant(t)?,
            org: member(o, "org")?,
        }),
        ["tenants", t, "orgs", o, "bots", b] => Ok(Scope::member(
            tenant(t)?,
            member(o, "org")?,
            MemberKind::Bot,
            member(b, "bot")?,
        )),
        ["tenants", t, "orgs", o, "users", u] => Ok(Scope::member(
            tenant(t)?,
            member(o, "org")?,
            MemberKind::User,
            member(u, "user")?,
        )),
        _ => Err(ResourceError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Scope {
        Scope::parse("tenant/acme").unwrap()
    }

    #[test]
    fn seed_names_parse_and_land_under_their_scope() {
        let bot = Scope::parse("tenant/acme/org/sales/bot/helper").unwrap();
        for name in ["email", "llm", "api-keys/openai", "api-keys/custom/x.y_z"] {
            let n = SecretName::parse(name, &bot).unwrap();
            assert_eq!(
                n.storage_path(&bot),
                format!("tenants/acme/orgs/sales/bots/helper/{name}")
            );
        }
        let n = SecretName::parse("infrastructure/tables", &tenant()).unwrap();
        assert_eq!(
            n.storage_path(&tenant()),
            "tenants/acme/infrastructure/tables"
        );
        let n = SecretName::parse("llm/providers/openai", &Scope::System).unwrap();
        assert_eq!(
            n.storage_path(&Scope::System),
            "system/llm/providers/openai"
        );
    }

    #[test]
    fn owners_named_like_the_separator_still_parse() {
        let r = SecretRef::parse("tenants/t/orgs/secrets/secrets/x").unwrap();
        assert_eq!(r.scope.storage_path(), "tenants/t/orgs/secrets");
        assert_eq!(r.name.as_str(), "x");
        let r = SecretRef::parse("tenants/t/secrets/a/secrets/b").unwrap();
        assert_eq!(r.scope.storage_path(), "tenants/t");
        assert_eq!(r.name.as_str(), "a/secrets/b");
        assert_eq!(
            SecretRef::parse("tenants/T/secrets/x"),
            Err(ResourceError::BadId("tenant"))
        );
        assert!(SecretRef::parse("tenants/é/secrets/ü/secrets/x").is_err());
    }

    #[test]
    fn names_that_escape_or_collide_are_refused() {
        let t = tenant();
        for (raw, want) in [
            ("", NameError::EmptySegment),
            ("a//b", NameError::EmptySegment),
            ("/a", NameError::EmptySegment),
            ("a/", NameError::EmptySegment),
            ("..", NameError::BadSegment),
            (".", NameError::BadSegment),
            ("a/../b", NameError::BadSegment),
            ("a%2Fb", NameError::BadSegment),
            ("a\0b", NameError::BadSegment),
            ("a\nb", NameError::BadSegment),
            ("Email", NameError::BadSegment),
            ("émail", NameError::BadSegment),
            (
                "orgs/o/bots/b/llm",
                NameError::Reserved("orgs", "the tenant's orgs"),
            ),
            (
                "config",
                NameError::Reserved("config", "the tenant's registry record"),
            ),
            (
                "api-keys/x",
                NameError::Reserved("api-keys", "the tenant's API keys"),
            ),
        ] {
            assert_eq!(SecretName::parse(raw, &t), Err(want), "{raw:?}");
        }
        assert_eq!(
            SecretName::parse("a/".repeat(9).trim_end_matches('/'), &t),
            Err(NameError::TooLong)
        );
        assert_eq!(
            SecretName::parse(&"a".repeat(129), &t),
            Err(NameError::TooLong)
        );
        // `api-keys/openai` is a bot's secret (seed 000), not a registry record.
        let bot = Scope::parse("tenant/acme/org/o/bot/b").unwrap();
        assert!(SecretName::parse("api-keys/openai", &bot).is_ok());
        let org = Scope::parse("tenant/acme/org/o").unwrap();
        assert!(SecretName::parse("bots/b/llm", &org).is_err());
        assert!(SecretName::parse("users/u/email", &org).is_err());
    }

    #[test]
    fn resource_names_round_trip_and_refuse_everything_else() {
        for resource in [
            "system/secrets/email",
            "tenants/acme/secrets/infrastructure/tables",
            "tenants/acme/orgs/sales/secrets/llm",
            "tenants/acme/orgs/sales/bots/helper/secrets/api-keys/openai",
            "tenants/acme/orgs/sales/users/550e8400-e29b-41d4-a716-446655440000/secrets/email",
        ] {
            let parsed = SecretRef::parse(resource).unwrap();
            assert_eq!(parsed.resource_name(), resource);
        }
        let r = SecretRef::parse("tenants/acme/orgs/sales/bots/helper/secrets/email").unwrap();
        assert_eq!(
            r.storage_path(),
            "tenants/acme/orgs/sales/bots/helper/email"
        );
        for (bad, want) in [
            ("tenants/acme/email", ResourceError::Malformed),
            ("tenants/acme/widgets/x/secrets/a", ResourceError::Malformed),
            ("system/x/secrets/a", ResourceError::Malformed),
            ("tenants/ACME/secrets/a", ResourceError::BadId("tenant")),
            (
                "tenants/acme/orgs/../secrets/a",
                ResourceError::BadId("org"),
            ),
            (
                "tenants/acme/secrets/config",
                ResourceError::BadName(NameError::Reserved(
                    "config",
                    "the tenant's registry record",
                )),
            ),
            (
                "tenants/acme/secrets/",
                ResourceError::BadName(NameError::EmptySegment),
            ),
        ] {
            assert_eq!(SecretRef::parse(bad), Err(want), "{bad}");
        }
    }
}
