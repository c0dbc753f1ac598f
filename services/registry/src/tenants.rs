//! Tenants and their keys: creating, reading, updating, listing and deleting
//! tenants, with the credential store provisioning a tenant's data key on
//! create and shredding it on delete.
//!
//! # Why the record carries a lifecycle
//!
//! A tenant record and its key live in two services, so no transaction
//! covers both. The record says how far a create or delete got
//! ([`Lifecycle`]), every step is idempotent, and only an `active` record is
//! visible (reads, lists, members, API keys); the other states answer
//! NOT_FOUND exactly like an absent tenant.
//!
//! - **Create**: claim the id with a `provisioning` record → provision the
//!   key → mark `active`. A crash or a credential store outage leaves at most
//!   an invisible `provisioning` record, which the next create of the id
//!   takes over. A key that already exists is adopted, and that is safe: a
//!   deleted tenant's record is removed only after its key is shredded, and
//!   ours was claimed after that removal, so any key present now was made
//!   after the old one was destroyed and never sealed the old tenant's data.
//! - **Delete**: mark `deleting` (check-and-set; the tenant is gone for
//!   callers from here on) → shred the key → erase its custom providers at
//!   the broker → remove the tenant with
//!   everything inside it. The key goes *before* the record: a record that
//!   outlived its key would be a tenant whose secrets are gone, but a key
//!   that outlived its record could be adopted by a new tenant of the same
//!   id and open the old tenant's ciphertext. A failed shred leaves the
//!   `deleting` mark: another DELETE of the tenant, or the registry's next
//!   start ([`Registry::resume_deletions`]), finishes the sweep. The mark is
//!   never taken back, since a shred whose answer was lost may have happened.

use locksmith_auth::Principal;
use locksmith_domain::{Scope, Tenant, TenantId, TenantPatch, TenantSpec};
use locksmith_store::{Cas, DocumentStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::{
    error::RegistryError,
    pagination::PageRequest,
    registry::{MAX_RACES, Page, Registry, check_version, describe, page_token, too_busy},
    store::{RecordKind, Stored, children_folder, collect_records, record_key},
};

/// How far a tenant's create or delete got (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Lifecycle {
    /// Served. Records written before lifecycles existed read as active.
    #[default]
    Active,
    /// The id is claimed; the key may not exist yet.
    Provisioning,
    /// Being deleted; the key may be shredded already.
    Deleting,
}

impl Lifecycle {
    pub(crate) fn is_active(&self) -> bool {
        *self == Lifecycle::Active
    }
}

/// A stored tenant: the tenant's fields plus its lifecycle. The tenant's
/// `version` counts changes callers made (1 on create, +1 per update); the
/// store's version, which also counts lifecycle steps, is only used for
/// check-and-set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TenantRecord {
    #[serde(flatten)]
    pub(crate) tenant: Tenant,
    #[serde(default, skip_serializing_if = "Lifecycle::is_active")]
    pub(crate) lifecycle: Lifecycle,
}

impl TenantRecord {
    fn with(&self, lifecycle: Lifecycle) -> Self {
        Self {
            tenant: self.tenant.clone(),
            lifecycle,
        }
    }
}

fn not_found(id: &TenantId) -> RegistryError {
    RegistryError::NotFound {
        what: describe(&Scope::Tenant(id.clone())),
    }
}

fn already_exists(id: &TenantId) -> RegistryError {
    RegistryError::AlreadyExists {
        what: describe(&Scope::Tenant(id.clone())),
    }
}

impl<S: DocumentStore> Registry<S> {
    /// The stored record of tenant `id` and its store version, whatever its
    /// lifecycle.
    pub(crate) async fn tenant_record(
        &self,
        id: &TenantId,
    ) -> Result<Option<(u64, TenantRecord)>, RegistryError> {
        let scope = Scope::Tenant(id.clone());
        match self.read(&scope).await? {
            Some(stored) => Ok(Some((
                stored.version,
                crate::registry::decode(&scope, &stored.body)?,
            ))),
            None => Ok(None),
        }
    }

    /// Writes `record` as tenant `id`'s next version if `cas` holds;
    /// answers the new store version, or `None` if another writer won.
    async fn write_record(
        &self,
        id: &TenantId,
        cas: Cas,
        record: &TenantRecord,
    ) -> Result<Option<u64>, RegistryError> {
        let key = record_key(&Scope::Tenant(id.clone()))?;
        let body = crate::registry::encode(record)?;
        match self.store.write(&key, body, cas).await {
            Ok(version) => Ok(Some(version)),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(RegistryError::Storage(e)),
        }
    }

    /// Creates a tenant at version 1 and has its key provisioned, acting
    /// for `actor` towards the credential store.
    pub async fn create_tenant(
        &self,
        actor: &Principal,
        id: TenantId,
        spec: TenantSpec,
    ) -> Result<Tenant, RegistryError> {
        let tenant = Tenant::create(id.clone(), spec, (self.clock)())?;
        let claim = TenantRecord {
            tenant,
            lifecycle: Lifecycle::Provisioning,
        };
        let claimed = self.claim(&id, &claim).await?;
        match self.keys.provision(actor, &id).await {
            // An existing key is adopted (see the module docs).
            Ok(()) | Err(crate::keys::KeyError::AlreadyExists) => {}
            Err(e) => {
                self.abandon(&id, claimed, &claim).await;
                return Err(RegistryError::Keys(e));
            }
        }
        let active = claim.with(Lifecycle::Active);
        if self
            .write_record(&id, Cas::Version(claimed), &active)
            .await?
            .is_none()
        {
            // Another create of the same id took the claim over (and will
            // finish it), or a delete removed it: this one lost.
            return Err(already_exists(&id));
        }
        tracing::info!(tenant = %id, "tenant created with its key");
        Ok(active.tenant)
    }

    /// Writes the `provisioning` claim on `id`, taking over an earlier
    /// create's claim left by a crash or a failure; answers its store version.
    async fn claim(&self, id: &TenantId, claim: &TenantRecord) -> Result<u64, RegistryError> {
        for _ in 0..MAX_RACES {
            if let Some(version) = self.write_record(id, Cas::CreateOnly, claim).await? {
                return Ok(version);
            }
            let Some((version, existing)) = self.tenant_record(id).await? else {
                continue; // erased meanwhile: claim again
            };
            if existing.lifecycle != Lifecycle::Provisioning {
                return Err(already_exists(id));
            }
            if let Some(version) = self.write_record(id, Cas::Version(version), claim).await? {
                return Ok(version);
            }
        }
        Err(too_busy(&Scope::Tenant(id.clone())))
    }

    /// Takes our claim back after the key could not be provisioned, so a
    /// failed create leaves nothing behind. The claim is first turned into a
    /// `deleting` marker with check-and-set (KV has no conditional delete,
    /// and a create that took the claim over must not lose it), then erased;
    /// if that is cut short the delete sweep finishes it. Best effort: a
    /// claim that stays is invisible, and the next create takes it over.
    async fn abandon(&self, id: &TenantId, claimed: u64, claim: &TenantRecord) {
        let outcome = match self
            .write_record(id, Cas::Version(claimed), &claim.with(Lifecycle::Deleting))
            .await
        {
            Ok(Some(_)) => self.erase(&Scope::Tenant(id.clone())).await,
            Ok(None) => Ok(()), // taken over: not ours to drop any more
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(tenant = %id, error = %e, "could not drop an unfinished tenant claim");
        }
    }

    /// The tenant `id`, if it is active.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Tenant, RegistryError> {
        match self.tenant_record(id).await? {
            Some((_, record)) if record.lifecycle.is_active() => Ok(record.tenant),
            _ => Err(not_found(id)),
        }
    }

    /// Applies `patch` if the tenant is at `version`.
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        version: u64,
        patch: TenantPatch,
    ) -> Result<Tenant, RegistryError> {
        let scope = Scope::Tenant(id.clone());
        for _ in 0..MAX_RACES {
            let Some((stored, record)) = self.tenant_record(id).await? else {
                return Err(not_found(id));
            };
            if !record.lifecycle.is_active() {
                return Err(not_found(id));
            }
            check_version(&scope, record.tenant.version, version)?;
            let next = TenantRecord {
                tenant: record.tenant.patched(patch.clone(), (self.clock)())?,
                lifecycle: Lifecycle::Active,
            };
            // A lost race is re-read: the next round reports how it changed.
            if self
                .write_record(id, Cas::Version(stored), &next)
                .await?
                .is_some()
            {
                tracing::info!(tenant = %id, version = next.tenant.version, "tenant updated");
                return Ok(next.tenant);
            }
        }
        Err(too_busy(&scope))
    }

    /// Deletes the tenant and everything inside it, shredding its key first,
    /// acting for `actor` towards the credential store. A delete of a tenant
    /// already being deleted resumes the sweep, whatever `version` says.
    pub async fn delete_tenant(
        &self,
        actor: &Principal,
        id: &TenantId,
        version: Option<u64>,
    ) -> Result<(), RegistryError> {
        let scope = Scope::Tenant(id.clone());
        let mut marked = false;
        for _ in 0..MAX_RACES {
            let Some((stored, record)) = self.tenant_record(id).await? else {
                return Err(not_found(id));
            };
            match record.lifecycle {
                Lifecycle::Provisioning => return Err(not_found(id)),
                Lifecycle::Deleting => {
                    marked = true;
                    break;
                }
                Lifecycle::Active => {}
            }
            if let Some(given) = version {
                check_version(&scope, record.tenant.version, given)?;
            }
            if self
                .write_record(id, Cas::Version(stored), &record.with(Lifecycle::Deleting))
                .await?
                .is_some()
            {
                marked = true;
                break;
            }
        }
        if !marked {
            return Err(too_busy(&scope));
        }
        self.finish_deletion(actor, id).await?;
        tracing::info!(tenant = %id, "tenant deleted and its key shredded");
        Ok(())
    }

    /// The rest of a delete once the tenant is marked: shred the key, erase
    /// its custom providers at the broker, drop the API key index entries, sweep the tenant's records, erase the
    /// tenant record last. Every step is idempotent.
    async fn finish_deletion(&self, actor: &Principal, id: &TenantId) -> Result<(), RegistryError> {
        self.keys
            .shred(actor, id)
            .await
            .map_err(RegistryError::Keys)?;
        self.keys
            .erase_providers(id)
            .await
            .map_err(RegistryError::Keys)?;
        self.drop_api_key_index(id).await?;
        self.erase(&Scope::Tenant(id.clone())).await
    }

    /// Finishes every delete a crash or an outage interrupted, as the
    /// registry itself. Answers how many tenants it finished; fails on the
    /// first sweep that cannot finish yet (the caller retries later).
    pub async fn resume_deletions(&self) -> Result<usize, RegistryError> {
        let myself = Principal::Service {
            service: locksmith_tls::ServiceName::Registry,
        };
        let folder = children_folder(&Scope::System, RecordKind::Tenant)?;
        let deleting = collect_records(&self.store, &folder, None, usize::MAX, |name, stored| {
            let record: TenantRecord = crate::registry::decode(&Scope::System, &stored.body)
                .map_err(|e| {
                    tracing::error!(tenant = name, error = %e, "unreadable tenant record");
                    e
                })?;
            Ok((record.lifecycle == Lifecycle::Deleting).then_some(record.tenant.id))
        })
        .await?;
        for (_, id) in &deleting {
            self.finish_deletion(&myself, id).await?;
            tracing::info!(tenant = %id, "interrupted tenant delete finished");
        }
        Ok(deleting.len())
    }

    /// A page of active tenants; tenants being created or deleted are left out.
    pub async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>, RegistryError> {
        let folder = children_folder(&Scope::System, RecordKind::Tenant)?;
        // One more than asked tells whether another page follows.
        let mut items = collect_records(
            &self.store,
            &folder,
            page.after.as_deref(),
            page.size + 1,
            |_, stored: Stored| {
                let record: TenantRecord = crate::registry::decode(&Scope::System, &stored.body)?;
                Ok(record.lifecycle.is_active().then_some(record.tenant))
            },
        )
        .await?;
        let next_page_token = page_token(&mut items, page.size, &Scope::System, RecordKind::Tenant);
        Ok(Page {
            items: items.into_iter().map(|(_, t)| t).collect(),
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests;
