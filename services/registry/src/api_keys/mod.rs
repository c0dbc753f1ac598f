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

use locksmith_store::{Cas, DocumentStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::{
    error::{RegistryError, invalid},
    pagination::{PageRequest, next_page_token},
    registry::{Page, Registry},
    store::{api_key_folder, api_key_index, api_key_key, collect_documents, owner_path, read},
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

/// The index entry of a key id: whose key it is (see `store`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexEntry {
    tenant: Option<TenantId>,
}

fn storage(e: StoreError) -> RegistryError {
    RegistryError::Storage(e)
}

/// 64 random bits colliding is a broken random source, not bad luck.
fn collision() -> RegistryError {
    RegistryError::Storage(StoreError::Corrupt("API key id collision".into()))
}

impl<S: DocumentStore> Registry<S> {
    /// Makes a key for `spec`; answers its record and the key itself (shown once).
    pub async fn create_api_key(
        &self,
        hasher: &KeyHasher,
        spec: KeySpec,
    ) -> Result<(ApiKeyRecord, SecretString), RegistryError> {
        let now = (self.clock)();
        validate(&spec, now)?;
        // A tenant being created or deleted has no keys yet or any more.
        let before = match &spec.tenant {
            Some(t) => Some(self.get_tenant(t).await?.created_at),
            None => None,
        };
        let new = new_key().map_err(|e| storage(StoreError::Unavailable(e.to_string())))?;
        let record = ApiKeyRecord::new(&new.key_id, spec, hasher, &new.secret, now);
        let owner = record.tenant.clone();
        let index = api_key_index(&record.key_id).map_err(storage)?;
        let key = api_key_key(owner.as_ref(), &record.key_id).map_err(storage)?;
        // The index first: a key is found only through it, so a crash
        // between the two writes leaves an entry pointing nowhere, never a
        // usable key nobody can find.
        let entry = serde_json::to_vec(&IndexEntry {
            tenant: owner.clone(),
        })
        .map_err(|e| storage(StoreError::Corrupt(e.to_string())))?;
        for (at, body) in [(&index, entry), (&key, record.encode()?)] {
            match self.store.write(at, body, Cas::CreateOnly).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => return Err(collision()),
                Err(e) => return Err(storage(e)),
            }
        }
        // The tenant again: one deleted meanwhile may have swept its keys
        // before this one was written (the same rule as members').
        if let Some(t) = &owner {
            let after = self.get_tenant(t).await.map(|t| t.created_at);
            if after.as_ref().ok() != before.as_ref() {
                self.store.delete_all(&key).await.map_err(storage)?;
                self.store.delete_all(&index).await.map_err(storage)?;
                return Err(RegistryError::NotFound {
                    what: owner_name(Some(t)),
                });
            }
        }
        Ok((record, new.secret))
    }

    /// The key `key_id` and its store version, through the index.
    async fn load_api_key(
        &self,
        key_id: &str,
    ) -> Result<Option<(u64, ApiKeyRecord)>, RegistryError> {
        let index = api_key_index(key_id).map_err(storage)?;
        let Some(entry) = read(&self.store, &index).await.map_err(storage)? else {
            return Ok(None);
        };
        let entry: IndexEntry =
            serde_json::from_slice(&entry.body).map_err(|e| RegistryError::Corrupt {
                what: format!("the index entry of API key '{key_id}'"),
                reason: e.to_string(),
            })?;
        let key = api_key_key(entry.tenant.as_ref(), key_id).map_err(storage)?;
        match read(&self.store, &key).await.map_err(storage)? {
            Some(stored) => Ok(Some((stored.version, ApiKeyRecord::decode(&stored.body)?))),
            None => Ok(None),
        }
    }

    /// Erases the index entries of `tenant`'s keys (its delete sweep erases
    /// the keys themselves).
    pub(crate) async fn drop_api_key_index(&self, tenant: &TenantId) -> Result<(), RegistryError> {
        let folder = api_key_folder(Some(tenant)).map_err(storage)?;
        let keys = collect_documents(&self.store, &folder, None, usize::MAX)
            .await
            .map_err(storage)?;
        for (key_id, _) in keys {
            let index = api_key_index(&key_id).map_err(storage)?;
            self.store.delete_all(&index).await.map_err(storage)?;
        }
        Ok(())
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
        let folder = api_key_folder(tenant).map_err(storage)?;
        let rows = collect_documents(&self.store, &folder, page.after.as_deref(), page.size + 1)
            .await
            .map_err(storage)?;
        let mut items = rows
            .iter()
            .map(|(_, r)| ApiKeyRecord::decode(&r.body))
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
            let (version, mut record) = self.load_api_key(key_id).await?.ok_or_else(absent)?;
            if record.tenant.as_ref() != tenant {
                return Err(absent());
            }
            if record.revoke_time.is_some() {
                return Ok(record);
            }
            record.revoke_time = Some((self.clock)());
            let key = api_key_key(record.tenant.as_ref(), key_id).map_err(storage)?;
            match self
                .store
                .write(&key, record.encode()?, Cas::Version(version))
                .await
            {
                Ok(_) => return Ok(record),
                // A last-used write slipped in: read again and retry.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(storage(e)),
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
        let (version, record) = self
            .load_api_key(key_id)
            .await?
            .ok_or(unauthenticated("unknown key id"))?;
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
        self.note_use(version, &record, now).await;
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
        let result = match (
            api_key_key(record.tenant.as_ref(), &record.key_id),
            updated.encode(),
        ) {
            (Ok(key), Ok(body)) => self
                .store
                .write(&key, body, Cas::Version(version))
                .await
                .map(drop),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(StoreError::Corrupt(e.to_string())),
        };
        match result {
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(key_id = %record.key_id, error = %e, "could not record API key use")
            }
        }
    }
}

/// The listing name page tokens are bound to.
fn listing(tenant: Option<&TenantId>) -> String {
    format!("{}/api-keys", owner_path(tenant))
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
