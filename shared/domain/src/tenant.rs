//! Tenants: one deployment each (dev, staging, prod…), never a customer org.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{IntegrationId, Invalid, TenantId, validation::Checker};

/// Whether a tenant's callers are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Served.
    #[default]
    Active,
    /// Data kept, callers refused.
    Suspended,
}

impl TenantStatus {
    /// Wire name (`active`, `suspended`).
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }
}

/// Per-tenant limits; zero means "the deployment's default".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Requests per minute across the suite.
    pub requests_per_minute: u32,
    /// Most connections the tenant may hold.
    pub max_connections: u32,
}

/// Largest quota a tenant can be given; beyond it a typo is more likely than a need.
pub const MAX_QUOTA: u32 = 10_000_000;
/// Most integrations one tenant can enable.
pub const MAX_INTEGRATIONS: usize = 256;

/// The fields of a tenant its administrators set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSpec {
    /// Human-readable name.
    pub display_name: String,
    /// DNS name the tenant is served under.
    pub domain: Option<String>,
    /// Non-secret settings.
    pub settings: BTreeMap<String, String>,
    /// Served or suspended.
    pub status: TenantStatus,
    /// Limits.
    pub quotas: Quotas,
    /// Enabled catalog entries.
    pub enabled_integrations: BTreeSet<IntegrationId>,
}

impl TenantSpec {
    /// Checks every field; reports all violations at once.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.display_name("display_name", &self.display_name);
        if let Some(domain) = &self.domain {
            c.domain("domain", domain);
        }
        c.string_map("settings", &self.settings);
        if self.quotas.requests_per_minute > MAX_QUOTA {
            c.fail(
                "quotas.requests_per_minute",
                format!("must be at most {MAX_QUOTA}"),
            );
        }
        if self.quotas.max_connections > MAX_QUOTA {
            c.fail(
                "quotas.max_connections",
                format!("must be at most {MAX_QUOTA}"),
            );
        }
        if self.enabled_integrations.len() > MAX_INTEGRATIONS {
            c.fail(
                "enabled_integrations",
                format!("must have at most {MAX_INTEGRATIONS} entries"),
            );
        }
        c.finish()
    }
}

/// A change to some of a tenant's fields; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New domain; `Some(None)` clears it.
    pub domain: Option<Option<String>>,
    /// New settings (replaces the whole map).
    pub settings: Option<BTreeMap<String, String>>,
    /// New status.
    pub status: Option<TenantStatus>,
    /// New quotas.
    pub quotas: Option<Quotas>,
    /// New set of enabled integrations (replaces the whole set).
    pub enabled_integrations: Option<BTreeSet<IntegrationId>>,
}

impl TenantPatch {
    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == TenantPatch::default()
    }
}

/// A stored tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Immutable id.
    pub id: TenantId,
    /// Administrator-set fields.
    #[serde(flatten)]
    pub spec: TenantSpec,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Time of the last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Check-and-set version: 1 on create, +1 per change.
    pub version: u64,
}

impl Tenant {
    /// A new tenant at version 1, if `spec` is valid.
    pub fn create(id: TenantId, spec: TenantSpec, now: OffsetDateTime) -> Result<Self, Invalid> {
        spec.validate()?;
        Ok(Tenant {
            id,
            spec,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    /// The tenant after `patch`, one version later, if the result is valid.
    pub fn patched(&self, patch: TenantPatch, now: OffsetDateTime) -> Result<Self, Invalid> {
        let mut spec = self.spec.clone();
        if let Some(v) = patch.display_name {
            spec.display_name = v;
        }
        if let Some(v) = patch.domain {
            spec.domain = v;
        }
        if let Some(v) = patch.settings {
            spec.settings = v;
        }
        if let Some(v) = patch.status {
            spec.status = v;
        }
        if let Some(v) = patch.quotas {
            spec.quotas = v;
        }
        if let Some(v) = patch.enabled_integrations {
            spec.enabled_integrations = v;
        }
        spec.validate()?;
        Ok(Tenant {
            id: self.id.clone(),
            spec,
            created_at: self.created_at,
            updated_at: now,
            version: self.version + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> TenantSpec {
        TenantSpec {
            display_name: name.into(),
            ..TenantSpec::default()
        }
    }

    #[test]
    fn create_and_patch_bump_the_version() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let t = Tenant::create(TenantId::parse("prod").unwrap(), spec("Prod"), now).unwrap();
        assert_eq!(t.version, 1);
        let later = now + time::Duration::seconds(5);
        let patch = TenantPatch {
            status: Some(TenantStatus::Suspended),
            ..TenantPatch::default()
        };
        let t2 = t.patched(patch, later).unwrap();
        assert_eq!((t2.version, t2.spec.status), (2, TenantStatus::Suspended));
        assert_eq!((t2.created_at, t2.updated_at), (now, later));
        assert_eq!(t2.spec.display_name, "Prod");
    }

    #[test]
    fn invalid_specs_name_each_field() {
        let mut s = spec("");
        s.domain = Some("not a domain".into());
        s.settings.insert("Bad Key".into(), "v".into());
        s.quotas.requests_per_minute = MAX_QUOTA + 1;
        let err = s.validate().unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "display_name",
                "domain",
                "settings.Bad Key",
                "quotas.requests_per_minute"
            ]
        );
    }

    #[test]
    fn json_shape_is_snake_case_with_rfc3339_times() {
        let t = Tenant::create(
            TenantId::parse("prod").unwrap(),
            spec("Prod"),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["status"], "active");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        let back: Tenant = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }
}
