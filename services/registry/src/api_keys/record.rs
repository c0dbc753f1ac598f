//! The stored form of an API key.

use locksmith_auth::Roles;
use locksmith_domain::TenantId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{KeySpec, secret::KeyHasher};
use crate::error::RegistryError;

/// One API key as stored: metadata plus the keyed hash of the key, never
/// the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// Lookup id, part of the key.
    pub key_id: String,
    /// Its tenant; `None` for an operator key.
    pub tenant: Option<TenantId>,
    /// A name for people.
    pub display_name: String,
    /// Roles inside the tenant.
    pub roles: Roles,
    /// HMAC-SHA256(pepper, key), hex.
    hash: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoke_time: Option<OffsetDateTime>,
    /// About when it was last used.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_time: Option<OffsetDateTime>,
}

/// Leaves the hash out: it is not the key, but it is nobody's business.
impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("key_id", &self.key_id)
            .field("tenant", &self.tenant)
            .field("display_name", &self.display_name)
            .field("roles", &self.roles)
            .field("create_time", &self.create_time)
            .field("expire_time", &self.expire_time)
            .field("revoke_time", &self.revoke_time)
            .field("last_used_time", &self.last_used_time)
            .finish_non_exhaustive()
    }
}

impl ApiKeyRecord {
    /// The record of a new key.
    pub(super) fn new(
        key_id: &str,
        spec: KeySpec,
        hasher: &KeyHasher,
        key: &SecretString,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            key_id: key_id.to_owned(),
            tenant: spec.tenant,
            display_name: spec.display_name,
            roles: spec.roles,
            hash: hasher.hash(key.expose_secret()),
            create_time: now,
            expire_time: spec.expire_time,
            revoke_time: None,
            last_used_time: None,
        }
    }

    /// Whether `presented` is this key.
    pub(super) fn secret_matches(&self, hasher: &KeyHasher, presented: &SecretString) -> bool {
        hasher.matches(presented.expose_secret(), &self.hash)
    }

    pub(super) fn encode(&self) -> Result<Vec<u8>, RegistryError> {
        serde_json::to_vec(self).map_err(|e| RegistryError::Corrupt {
            what: format!("API key '{}'", self.key_id),
            reason: e.to_string(),
        })
    }

    pub(super) fn decode(body: &[u8]) -> Result<Self, RegistryError> {
        serde_json::from_slice(body).map_err(|e| RegistryError::Corrupt {
            what: "an API key record".into(),
            reason: e.to_string(),
        })
    }
}
