//! API keys: made, listed, revoked and verified by the registry, which owns
//! tenants (a key lives and dies with its tenant).
//!
//! Records live beside the tenant's other records (`tenants/{t}/api-keys/{id}`,
//! operator keys at `system/api-keys/{id}`) and hold only a keyed hash of the
//! key ([`secret`]). `last_used_time` is written at most once per
//! [`LAST_USED_GRANULARITY`], so verification (already cached by the edge) does
//! not turn every request into a write.

mod grpc;
mod record;
pub mod secret;

use std::time::Duration;

use locksmith_auth::Roles;
use locksmith_domain::{Tenant, TenantId, TenantStatus};
use secrecy::SecretString;
use time::OffsetDateTime;

pub use grpc::ApiKeyApi;
pub use record::ApiKeyRecord;
use secret::{KeyHasher, key_id_of, new_key};

use crate::{
    error::{RegistryError, invalid},
    pagination::{PageRequest, next_page_token},
    registry::{Page, Registry},
    store::{RegistryStore, StoreError, api_key_parent, api_key_path},
};

/// How stale `last_used_time` may be.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
/// Longest name of a key.
const MAX_NAME_CHARS: usize = 100;

/// What a new key is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Its tenant, or `None` for an operator key.
    pub tenant: Option<TenantId>,
    /// A name for people.
    pub display_name: String,
    /// Roles inside the tenant; none for an operator key.
    pub roles: Roles,
    /// When it stops working.
    pub expire_time: Option<OffsetDateTime>,
}

/// A key that checked out, with its tenant (for a tenant key).
#[derive(Debug)]
pub struct Verified {
    /// The key's record.
    pub key: ApiKeyRecord,
    /// Its tenant, active.
    pub tenant: Option<Tenant>,
}

fn owner_name(tenant: Option<&TenantId>) -> String {
    match tenant {
        Some(t) => format!("tenant '{t}'"),
        None => "the operator".to_owned(),
    }
}

fn unauthenticated(log_reason: &'static str) -> RegistryError {
    RegistryError::Unauthenticated { log_reason }
}

impl<S: RegistryStore> Registry<S> {
    /// Makes a key for `spec`; answers its record and the key itself (shown once).
    pub async fn create_api_key(
        &self,
        hasher: &KeyHasher,
        spec: KeySpec,
    ) -> Result<(ApiKeyRecord, SecretString), RegistryError> {
        let now = (self.clock)();
        validate(&spec, now)?;
        let new =
            new_key().map_err(|e| RegistryError::Storage(StoreError::Backend(e.to_string())))?;
        let record = ApiKeyRecord::new(&new.key_id, spec, hasher, &new.secret, now);
        let body = record.encode()?;
        let path = api_key_path(record.tenant.as_ref(), &record.key_id);
        match self
            .store
            .create_api_key(path, record.key_id.clone(), body)
            .await
        {
            Ok(()) => Ok((record, new.secret)),
            Err(StoreError::ParentMissing) => Err(RegistryError::NotFound {
                what: owner_name(record.tenant.as_ref()),
            }),
            // 64 random bits colliding is a broken random source, not bad luck.
            Err(StoreError::AlreadyExists) => Err(RegistryError::Storage(StoreError::Backend(
                "API key id collision".into(),
            ))),
            Err(e) => Err(RegistryError::Storage(e)),
        }
    }

    /// A page of `tenant`'s keys (or the operator keys), by key id.
    pub async fn list_api_keys(
        &self,
        tenant: Option<&TenantId>,
        page: PageRequest,
    ) -> Result<Page<ApiKeyRecord>, RegistryError> {
        if let Some(t) = tenant {
            self.get_tenant(t).await?;
        }
        let rows = self
            .store
            .list_api_keys(api_key_parent(tenant), page.after, page.size + 1)
            .await
            .map_err(RegistryError::Storage)?;
        let mut items = rows
            .iter()
            .map(|r| ApiKeyRecord::decode(&r.body))
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if items.len() > page.size {
            items.truncate(page.size);
            items
                .last()
                .map(|k| next_page_token(&listing(tenant), &k.key_id))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Revokes `key_id` of `tenant` (or an operator key). Revoking twice is
    /// fine and keeps the first revoke time.
    pub async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        key_id: &str,
    ) -> Result<ApiKeyRecord, RegistryError> {
        if !secret::is_key_id(key_id) {
            // Not repeated: a caller may have pasted a whole key here.
            return Err(invalid(
                "key_id",
                "must be the key's id: 16 lowercase hex characters",
            ));
        }
        let absent = || RegistryError::NotFound {
            what: format!("API key '{key_id}' of {}", owner_name(tenant)),
        };
        loop {
            let stored = self
                .store
                .get_api_key(key_id.to_owned())
                .await
                .map_err(RegistryError::Storage)?
                .ok_or_else(absent)?;
            let mut record = ApiKeyRecord::decode(&stored.body)?;
            if record.tenant.as_ref() != tenant {
                return Err(absent());
            }
            if record.revoke_time.is_some() {
                return Ok(record);
            }
            record.revoke_time = Some((self.clock)());
            let path = api_key_path(record.tenant.as_ref(), key_id);
            match self
                .store
                .update_api_key(path, stored.version, record.encode()?)
                .await
            {
                Ok(()) => return Ok(record),
                // A last-used write slipped in: read again and retry.
                Err(StoreError::VersionConflict { .. }) => continue,
                Err(StoreError::NotFound) => return Err(absent()),
                Err(e) => return Err(RegistryError::Storage(e)),
            }
        }
    }

    /// Checks a presented key: known, the right secret, not revoked, not
    /// expired, its tenant present and active.
    pub async fn verify_api_key(
        &self,
        hasher: &KeyHasher,
        presented: &SecretString,
    ) -> Result<Verified, RegistryError> {
        let key_id = key_id_of(presented).ok_or(unauthenticated("not a Locksmith key"))?;
        let stored = self
            .store
            .get_api_key(key_id.to_owned())
            .await
            .map_err(RegistryError::Storage)?
            .ok_or(unauthenticated("unknown key id"))?;
        let record = ApiKeyRecord::decode(&stored.body)?;
        if !record.secret_matches(hasher, presented) {
            return Err(unauthenticated("wrong secret"));
        }
        let now = (self.clock)();
        if record.revoke_time.is_some() {
            return Err(unauthenticated("revoked"));
        }
        if record.expire_time.is_some_and(|at| at <= now) {
            return Err(unauthenticated("expired"));
        }
        let tenant = match &record.tenant {
            None => None,
            Some(t) => match self.get_tenant(t).await {
                Ok(tenant) => Some(tenant),
                Err(RegistryError::NotFound { .. }) => return Err(unauthenticated("tenant gone")),
                Err(e) => return Err(e),
            },
        };
        if tenant
            .as_ref()
            .is_some_and(|t| t.spec.status == TenantStatus::Suspended)
        {
            return Err(RegistryError::TenantSuspended);
        }
        self.note_use(stored.version, &record, now).await;
        Ok(Verified {
            key: record,
            tenant,
        })
    }

    /// Writes `last_used_time` if it is older than the granularity. A lost
    /// race or a storage hiccup only loses a timestamp: logged, not failed.
    async fn note_use(&self, version: u64, record: &ApiKeyRecord, now: OffsetDateTime) {
        let fresh = record
            .last_used_time
            .is_some_and(|t| now - t < LAST_USED_GRANULARITY);
        if fresh {
            return;
        }
        let mut updated = record.clone();
        updated.last_used_time = Some(now);
        let path = api_key_path(record.tenant.as_ref(), &record.key_id);
        let result = match updated.encode() {
            Ok(body) => self.store.update_api_key(path, version, body).await,
            Err(e) => Err(StoreError::Backend(e.to_string())),
        };
        match result {
            Ok(()) | Err(StoreError::VersionConflict { .. }) => {}
            Err(e) => {
                tracing::warn!(key_id = %record.key_id, error = %e, "could not record API key use")
            }
        }
    }
}

/// The listing name page tokens are bound to.
fn listing(tenant: Option<&TenantId>) -> String {
    format!("{}/api-keys", api_key_parent(tenant))
}

/// The page request for a key listing.
pub fn page_request(
    tenant: Option<&TenantId>,
    size: i32,
    token: &str,
) -> Result<PageRequest, RegistryError> {
    PageRequest::parse(size, token, &listing(tenant))
}

fn validate(spec: &KeySpec, now: OffsetDateTime) -> Result<(), RegistryError> {
    let name = spec.display_name.as_str();
    if name.trim().is_empty() {
        return Err(invalid("display_name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "display_name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "display_name",
            "must not contain control characters",
        ));
    }
    match (&spec.tenant, spec.roles.is_empty()) {
        (Some(_), true) => return Err(invalid("roles", "must name at least one role")),
        (None, false) => {
            return Err(invalid(
                "roles",
                "must be empty for an operator key, which reaches everything",
            ));
        }
        _ => {}
    }
    if spec.expire_time.is_some_and(|at| at <= now) {
        return Err(invalid("expire_time", "must be in the future"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
