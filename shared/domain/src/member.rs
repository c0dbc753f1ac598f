//! Members of a tenant: orgs (customers), and the bots and users inside each
//! org. They share one shape; users alone may carry an email address.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Invalid, Scope, validation::Checker};

/// Which kind of member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    /// A customer organisation inside a tenant.
    Org,
    /// A bot inside an org.
    Bot,
    /// A user inside an org.
    User,
}

impl MemberKind {
    /// Singular wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Org => "org",
            MemberKind::Bot => "bot",
            MemberKind::User => "user",
        }
    }

    /// Plural, as used in storage paths and URLs.
    pub fn plural(self) -> &'static str {
        match self {
            MemberKind::Org => "orgs",
            MemberKind::Bot => "bots",
            MemberKind::User => "users",
        }
    }
}

/// The fields of a member its administrators set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// Human-readable name.
    pub display_name: String,
    /// Contact address (users only).
    pub email: Option<String>,
    /// Non-secret labels.
    pub labels: BTreeMap<String, String>,
}

impl MemberSpec {
    /// Checks every field for a member of `kind`.
    pub fn validate(&self, kind: MemberKind) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.display_name("display_name", &self.display_name);
        match (&self.email, kind) {
            (Some(email), MemberKind::User) => c.email("email", email),
            (Some(_), _) => c.fail("email", format!("a {} has no email", kind.as_str())),
            (None, _) => {}
        }
        c.string_map("labels", &self.labels);
        c.finish()
    }
}

/// A change to some of a member's fields; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New email; `Some(None)` clears it.
    pub email: Option<Option<String>>,
    /// New labels (replaces the whole map).
    pub labels: Option<BTreeMap<String, String>>,
}

/// A stored org, bot or user, addressed by its scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `tenant/{t}/org/{o}`, `…/bot/{b}` or `…/user/{u}`.
    #[serde(with = "scope_text")]
    pub scope: Scope,
    /// Administrator-set fields.
    #[serde(flatten)]
    pub spec: MemberSpec,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Time of the last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Check-and-set version.
    pub version: u64,
}

impl Member {
    /// A new member at version 1. `scope` must name an org, bot or user.
    pub fn create(scope: Scope, spec: MemberSpec, now: OffsetDateTime) -> Result<Self, Invalid> {
        let kind = member_kind(&scope)?;
        spec.validate(kind)?;
        Ok(Member {
            scope,
            spec,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    /// The member's kind.
    pub fn kind(&self) -> MemberKind {
        self.scope.member_kind().unwrap_or(MemberKind::Org)
    }

    /// The member after `patch`, one version later, if the result is valid.
    pub fn patched(&self, patch: MemberPatch, now: OffsetDateTime) -> Result<Self, Invalid> {
        let mut spec = self.spec.clone();
        if let Some(v) = patch.display_name {
            spec.display_name = v;
        }
        if let Some(v) = patch.email {
            spec.email = v;
        }
        if let Some(v) = patch.labels {
            spec.labels = v;
        }
        spec.validate(self.kind())?;
        Ok(Member {
            scope: self.scope.clone(),
            spec,
            created_at: self.created_at,
            updated_at: now,
            version: self.version + 1,
        })
    }
}

fn member_kind(scope: &Scope) -> Result<MemberKind, Invalid> {
    scope.member_kind().ok_or_else(|| {
        Invalid(vec![crate::FieldError::new(
            "scope",
            "must name an org, a bot or a user",
        )])
    })
}

mod scope_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::Scope;

    pub fn serialize<S: Serializer>(scope: &Scope, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(scope)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let text = String::deserialize(d)?;
        Scope::parse(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, email: Option<&str>) -> MemberSpec {
        MemberSpec {
            display_name: name.into(),
            email: email.map(Into::into),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn only_users_have_email() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let user = Scope::parse("tenant/t/org/o/user/u").unwrap();
        let bot = Scope::parse("tenant/t/org/o/bot/b").unwrap();
        assert!(Member::create(user, spec("U", Some("u@example.com")), now).is_ok());
        let err = Member::create(bot, spec("B", Some("b@example.com")), now).unwrap_err();
        assert_eq!(err.0[0].field, "email");
    }

    #[test]
    fn tenants_and_system_are_not_members() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert!(Member::create(Scope::System, spec("x", None), now).is_err());
        assert!(Member::create(Scope::parse("tenant/t").unwrap(), spec("x", None), now).is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let m = Member::create(
            Scope::parse("tenant/t/org/o").unwrap(),
            spec("Acme", None),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"scope\":\"tenant/t/org/o\""), "{json}");
        assert_eq!(serde_json::from_str::<Member>(&json).unwrap(), m);
    }
}
